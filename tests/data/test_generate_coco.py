"""The embedded COCO generator: layout, annotation consistency (COCOeval of GT vs itself) and determinism."""
import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipeline.data.generate_coco import generate_coco, mask_to_polygons
from pipeline.data.shapes import SHAPES

CFG = dict(train_images=70, val_images=12, min_size=96, max_size=128, max_objects=3, jpeg_quality=90)
CLASSES = list(SHAPES)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("coco")
    stats = {n: generate_coco(base / n / "coco", CFG, seed, CLASSES) for n, seed in (("a", 0), ("b", 0), ("c", 1))}
    return base, stats


def _coco(generated, split: str) -> COCO:
    return _quiet(COCO, str(generated[0] / "a" / "coco" / "annotations" / f"instances_{split}.json"))


def test_same_seed_same_bytes_other_seed_differs(generated):
    base, _ = generated
    a, b, c = (_files(base / n / "coco") for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a)


def test_layout(generated):
    base, stats = generated
    root = base / "a" / "coco"
    files = set(_files(root))
    expected = {f"train2017/{i:012d}.jpg" for i in range(1, 71)} | {f"val2017/{i:012d}.jpg" for i in range(71, 83)}
    assert files == expected | {"annotations/instances_train2017.json", "annotations/instances_val2017.json"}
    assert stats["a"]["train2017_images"] == 70 and stats["a"]["val2017_images"] == 12


@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_annotations_are_consistent(generated, split):
    coco = _coco(generated, split)
    data = coco.dataset
    assert data["categories"] == [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]
    assert data["info"]["date_created"] and data["licenses"] == []
    assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    for img in data["images"]:
        with Image.open(generated[0] / "a" / "coco" / split / img["file_name"]) as f:
            assert f.size == (img["width"], img["height"])
            assert 96 <= f.width <= 128 and 96 <= f.height <= 128
        anns = coco.imgToAnns[img["id"]]
        assert 1 <= len(anns) <= 3
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= img["width"] and y + h <= img["height"]
            assert ann["iscrowd"] == 0
            mask = coco.annToMask(ann)
            assert ann["area"] == int(mask.sum()) > 0
            assert list(mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask)))) == ann["bbox"]
            assert all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in ann["segmentation"])


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ground_truth_scores_ap_one_against_itself(generated, iou_type):
    coco = _coco(generated, "train2017")
    dets = []
    for ann in coco.dataset["annotations"]:
        det = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 1.0}
        # loadRes takes bboxes as is; segmentations must be RLE (it computes their area and box).
        det.update({"bbox": ann["bbox"]} if iou_type == "bbox" else {"segmentation": coco.annToRLE(ann)})
        dets.append(det)
    evaluator = COCOeval(coco, _quiet(coco.loadRes, dets), iou_type)
    _quiet(evaluator.evaluate)
    _quiet(evaluator.accumulate)
    _quiet(evaluator.summarize)
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_ring_and_occlusion_holes_become_exact_hole_free_polygons():
    yy, xx = np.mgrid[0:40, 0:50]
    r = np.hypot(yy - 20, xx - 24)
    ring = (r < 15) & (r >= 8)
    blob = (np.hypot(yy - 10, xx - 10) < 9) & ~((yy > 6) & (yy < 12) & (xx > 6) & (xx < 12))
    rng = np.random.default_rng(0)
    for mask in (ring, blob, rng.random((30, 30)) < 0.5):
        polys = mask_to_polygons(mask)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, *mask.shape))
        assert np.array_equal(mask_utils.decode(rle).astype(bool), mask)
    assert len(mask_to_polygons(ring)) >= 2  # a hole cannot be one simple polygon


def test_unknown_class_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="banana"):
        generate_coco(tmp_path / "coco", CFG, 0, ["circle", "banana"])


def test_classification_look_draws_that_sets_objects_two_tone_without_occlusion(tmp_path):
    from pipeline.data.look import look_for

    classification = {"palette_size": 2, "colour_jitter": 10, "background_contrast": [0.0, 0.0],
                      "object_texture": 0.0, "rotation": 15}
    root = tmp_path / "coco"
    generate_coco(root, CFG | {"train_images": 30, "val_images": 2}, 0, CLASSES[:10],
                  look_for("classification", classification))
    coco = _quiet(COCO, str(root / "annotations" / "instances_train2017.json"))
    assert sorted(c["name"] for c in coco.dataset["categories"]) == sorted(CLASSES[:10])
    several = 0
    for image_id, img in coco.imgs.items():
        arr = np.asarray(Image.open(root / "train2017" / img["file_name"]), dtype=np.float32)
        assert np.abs(arr - arr.mean(2, keepdims=True)).max() < 40  # neutral tones: the two-tone palette
        masks = [coco.annToMask(a) for a in coco.imgToAnns[image_id]]
        assert masks and np.sum(masks, axis=0).max() == 1  # no two objects share a pixel: nothing occluded
        several += len(masks) > 1
    assert several > 5  # still scenes of several objects
    with pytest.raises(ValueError, match="look 'photo': expected one of native, classification"):
        look_for("photo", classification)
