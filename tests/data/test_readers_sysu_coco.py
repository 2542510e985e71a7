"""Readers of the SYSU-30k and COCO layouts: parsing, meta lists, and a DatasetLayoutError naming the path."""
import json
import shutil
from pathlib import Path

import pytest

from pipeline.data.errors import DatasetLayoutError
from pipeline.data.readers_coco import coco_tables, read_coco
from pipeline.data.readers_sysu import read_sysu

SYSU_FILES = [
    "sysu_train_set_all/0000000001/0000000001_1.jpg",
    "sysu_train_set_all/0000000001/0000000001_2.JPG",
    "sysu_train_set_all/0000000002/0000000002_1.png",
    "sysu_test_set_all/query/0000007/0000007_c2_1.jpg",
    "sysu_test_set_all/gallery/0000007/0000007_c1_1.jpg",
    "sysu_test_set_all/gallery/0000others/0000others_c1_3.jpeg",
]


def _touch(root: Path, rels) -> Path:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")  # the reader never opens images
    return root


@pytest.fixture
def sysu(tmp_path):
    return _touch(tmp_path / "sysu30k", SYSU_FILES)


def test_sysu_walk_parses_identity_camera_and_distractors(sysu):
    images = read_sysu(sysu)
    by_rel = {im.rel: im for im in images}
    assert [im.split for im in images] == ["train"] * 3 + ["query", "gallery", "gallery"]
    q = by_rel["sysu_test_set_all/query/0000007/0000007_c2_1.jpg"]
    assert (q.identity, q.label, q.camera, q.is_distractor) == ("0000007", 7, 2, False)
    assert q.path == sysu / q.rel and q.path.is_absolute()
    d = by_rel["sysu_test_set_all/gallery/0000others/0000others_c1_3.jpeg"]
    assert (d.identity, d.label, d.camera, d.is_distractor) == ("0000others", -1000, 1, True)
    t = by_rel["sysu_train_set_all/0000000002/0000000002_1.png"]
    assert (t.identity, t.label, t.camera, t.is_distractor) == ("0000000002", 2, -1, False)


def test_sysu_meta_lists_are_used_and_train_folders_not_walked(sysu):
    (sysu / "meta").mkdir()
    (sysu / "meta" / "train.txt").write_text("sysu_train_set_all/0000000009/0000000009_1.jpg\n")
    (sysu / "meta" / "query.txt").write_text("sysu_test_set_all/query/0000007/0000007_c2_1.jpg\n\n")
    images = read_sysu(sysu)
    train = [im for im in images if im.split == "train"]
    # Only the listed (and here missing) training file: the folder with 3 images was not walked.
    assert [(im.rel, im.label, im.path.exists()) for im in train] == [
        ("sysu_train_set_all/0000000009/0000000009_1.jpg", 9, False)]
    assert len([im for im in images if im.split == "gallery"]) == 2  # no gallery list: walked
    assert len([im for im in read_sysu(sysu, use_meta=False) if im.split == "train"]) == 3


@pytest.mark.parametrize("case", ["root", "query", "gallery", "bad_name", "prefix", "bad_meta_name"])
def test_sysu_layout_errors_name_the_path(sysu, case):
    root = sysu
    if case == "root":
        root = offending = sysu.parent / "nowhere"
    elif case in ("query", "gallery"):
        offending = sysu / "sysu_test_set_all" / case
        shutil.rmtree(offending)
    elif case == "bad_name":
        offending = sysu / "sysu_test_set_all/query/0000007/0000007-c2.jpg"
    elif case == "prefix":
        offending = sysu / "sysu_test_set_all/gallery/0000008/0000009_c1_1.jpg"
    else:
        (sysu / "meta").mkdir()
        (sysu / "meta" / "gallery.txt").write_text("sysu_test_set_all/gallery/0000007/x.jpg\n")
        offending = sysu / "sysu_test_set_all/gallery/0000007/x.jpg"
    if case in ("bad_name", "prefix"):
        _touch(sysu, [offending.relative_to(sysu)])
    with pytest.raises(DatasetLayoutError) as err:
        read_sysu(root)
    assert str(offending) in str(err.value)


def _coco_root(tmp_path: Path, data=None, text=None) -> Path:
    root = tmp_path / "coco"
    _touch(root, ["val2017/000000000001.jpg"])
    ann = root / "annotations" / "instances_val2017.json"
    ann.parent.mkdir(parents=True)
    ann.write_text(text if text is not None else json.dumps(data))
    return root


COCO_DATA = {
    "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 100, "height": 80},
               {"id": 2, "file_name": "000000000002.jpg", "width": 100, "height": 80}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 80], "area": 10, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [90, 10, 10.5, 0], "area": 1, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
        {"id": 4, "image_id": 9, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "circle", "supercategory": "shape"}],
}


def test_coco_reader_and_tables(tmp_path, capsys):
    split = read_coco(_coco_root(tmp_path, COCO_DATA), "val2017")
    assert capsys.readouterr().out == ""  # pycocotools' progress prints are silenced
    assert split.images_dir == tmp_path / "coco" / "val2017" and len(split.coco.anns) == 4
    images, anns = coco_tables(split)
    assert images[0] == {"path": "val2017/000000000001.jpg", "split": "val2017", "image_id": 1,
                         "declared_width": 100, "declared_height": 80,
                         "file": tmp_path / "coco" / "val2017" / "000000000001.jpg"}
    rows = {r["ann_id"]: r for r in anns}
    assert rows[1]["path"] == "annotations/instances_val2017.json#ann=1"
    flags = lambda r: (r["image_exists"], r["category_known"], r["bbox_inside"], r["bbox_positive"])  # noqa: E731
    assert flags(rows[1]) == (True, True, True, True)
    assert flags(rows[2]) == (True, False, False, False)  # unknown category, past the right edge, zero height
    assert flags(rows[3]) == (False, True, True, True)  # image declared but its file is missing
    assert flags(rows[4]) == (False, True, False, True)  # image id unknown


@pytest.mark.parametrize("case", ["images_dir", "ann_file", "json", "top_key", "ann_key"])
def test_coco_layout_errors_name_the_path(tmp_path, case):
    root = _coco_root(tmp_path, COCO_DATA)
    ann = root / "annotations" / "instances_val2017.json"
    offending, expect = ann, ""
    if case == "images_dir":
        (root / "val2017" / "000000000001.jpg").unlink()
        (root / "val2017").rmdir()
        offending = root / "val2017"
    elif case == "ann_file":
        ann.unlink()
    elif case == "json":
        ann.write_text('{"images": [\n  {"id": 1,, }]}')
        expect = "line 2"
    elif case == "top_key":
        ann.write_text(json.dumps({k: v for k, v in COCO_DATA.items() if k != "categories"}))
        expect = "categories"
    else:
        bad = json.loads(json.dumps(COCO_DATA))
        del bad["annotations"][2]["bbox"]
        ann.write_text(json.dumps(bad))
        expect = "bbox"
    with pytest.raises(DatasetLayoutError) as err:
        read_coco(root, "val2017")
    assert str(offending) in str(err.value) and expect in str(err.value)


def test_readers_on_generated_datasets(tmp_path):
    from pipeline.data.generate_coco import generate_coco
    from pipeline.data.generate_sysu import generate_sysu

    cfg = dict(query_ids=3, distractors=4, train_bags=2, images_per_bag=3, identities_per_bag=2,
               height=128, width=64, jpeg_quality=90)
    stats = generate_sysu(tmp_path / "sysu30k", cfg, 0)
    images = read_sysu(tmp_path / "sysu30k")
    assert len(images) == stats["images"] == 3 + 7 + 6
    assert read_sysu(tmp_path / "sysu30k", use_meta=False) == images
    coco_cfg = dict(train_images=3, val_images=2, min_size=96, max_size=128, max_objects=3, jpeg_quality=90)
    generate_coco(tmp_path / "coco", coco_cfg, 0, ["circle", "ring", "star"])
    image_rows, ann_rows = coco_tables(read_coco(tmp_path / "coco", "val2017"))
    assert len(image_rows) == 2 and all(r["file"].is_file() for r in image_rows)
    assert ann_rows and all(r["image_exists"] and r["category_known"] and r["bbox_inside"] and r["bbox_positive"]
                            for r in ann_rows)
