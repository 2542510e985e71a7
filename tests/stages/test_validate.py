"""The validate stage's logic on real generated trees, each with one kind of bad input."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from pipeline.config import compose, validate_params
from pipeline.data.generate_classification import generate_classification
from pipeline.data.generate_coco import generate_coco
from pipeline.data.generate_sysu import generate_sysu
from pipeline.stages.validate import build_tables, quarantine, rules_for
from pipeline.validation import run_checks

sys.path.insert(0, str(Path(__file__).parent.parent / "data"))
from badfiles import BAD_KINDS, good_jpeg_bytes, rgba_png  # noqa: E402

CLS = {"classes": 3, "image_size": 32, "train_per_class": 12, "val_per_class": 3, "palette_size": 8,
       "scale": [0.5, 0.85], "max_distractors": 2, "jpeg_quality": 90}
SYSU = {"query_ids": 4, "distractors": 6, "train_bags": 2, "images_per_bag": 3, "identities_per_bag": 2,
        "height": 64, "width": 32, "jpeg_quality": 90}
COCO = {"train_images": 4, "val_images": 3, "min_size": 64, "max_size": 80, "max_objects": 2, "jpeg_quality": 90}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    generate_classification(root / "imagenet", CLS, seed=1)
    generate_sysu(root / "sysu30k", SYSU, seed=1)
    generate_coco(root / "coco", COCO, seed=1, classes=["circle", "square", "triangle"])
    return root


@pytest.fixture
def data(pristine, tmp_path) -> Path:
    shutil.copytree(pristine, tmp_path / "d")
    return tmp_path / "d"


def _params(root: Path, **validate):
    raw = compose([f"data.classification.root={root / 'imagenet'}", f"data.sysu.root={root / 'sysu30k'}",
                   f"data.coco.root={root / 'coco'}"])
    raw["validate"].update(validate)
    return validate_params(raw)


def _check(root: Path, **validate):
    params = _params(root, **validate)
    tables = build_tables(params)
    return tables, run_checks(tables, rules_for(params))


def test_clean_data_passes(data):
    _, report = _check(data)
    assert report.success, report.format_failures()


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_each_bad_file_is_named_with_its_expectation(data, kind):
    victim = sorted((data / "imagenet/train/circle").glob("*.jpg"))[2]
    victim.write_bytes(BAD_KINDS[kind]())
    _, report = _check(data)
    text = report.format_failures()
    assert not report.success
    assert f"[classification] {victim.relative_to(data / 'imagenet').as_posix()}: expect decodes" in text


def test_grayscale_and_cmyk_accepted_rgba_rejected(data):
    d = data / "imagenet/train/square"
    (d / "gray.jpg").write_bytes(good_jpeg_bytes(mode="L"))
    (d / "cmyk.jpg").write_bytes(good_jpeg_bytes(mode="CMYK"))
    rgba_png(d / "alpha.png")
    _, report = _check(data)
    assert [(f.path, f.expectation.split(" ")[0]) for f in report.failures] == [("train/square/alpha.png", "mode")]


def test_missing_class_folder_in_val(data):
    shutil.rmtree(data / "imagenet/val/triangle")
    _, report = _check(data)
    lines = report.format_failures()
    assert "val/triangle" in lines and "count" in lines


def test_label_outside_the_class_set(data):
    (data / "imagenet/val/zebra").mkdir()
    (data / "imagenet/val/zebra/z.jpg").write_bytes(good_jpeg_bytes())
    _, report = _check(data)
    assert "[classification] val/zebra/z.jpg: expect label" in report.format_failures()


def test_sysu_query_without_gallery_match(data):
    gallery = data / "sysu30k/sysu_test_set_all/gallery/0000002"
    shutil.rmtree(gallery)
    meta = data / "sysu30k/meta/gallery.txt"
    meta.write_text("".join(line + "\n" for line in meta.read_text().split() if "/0000002/" not in line))
    _, report = _check(data)
    assert "[sysu] sysu_test_set_all/query/0000002/0000002_c2_1.jpg: expect has_gallery_match" in (
        report.format_failures())


def test_coco_box_outside_its_image(data):
    ann_file = data / "coco/annotations/instances_val2017.json"
    coco = json.loads(ann_file.read_text())
    ann = coco["annotations"][0]
    width = next(im["width"] for im in coco["images"] if im["id"] == ann["image_id"])
    ann["bbox"][0] = width - 1.0
    ann_file.write_text(json.dumps(coco))
    _, report = _check(data)
    assert f"annotations/instances_val2017.json#ann={ann['id']}: expect bbox_inside" in report.format_failures()


def test_quarantine_leaves_bad_files_out_and_their_orphans_too(data):
    victim = data / "sysu30k/sysu_test_set_all/gallery/0000003/0000003_c1_1.jpg"
    victim.write_bytes(b"not a jpeg")
    before = victim.read_bytes()
    params = _params(data, on_error="quarantine")
    tables = build_tables(params)
    rules = rules_for(params)
    tables, report, gone = quarantine(tables, rules, run_checks(tables, rules), docs_dir=None)
    assert report.success
    assert sorted(gone["path"]) == ["sysu_test_set_all/gallery/0000003/0000003_c1_1.jpg",
                                    "sysu_test_set_all/query/0000003/0000003_c2_1.jpg"]
    assert victim.read_bytes() == before  # quarantine never touches the file
    assert "0000003" not in set(tables["sysu"]["identity"])
