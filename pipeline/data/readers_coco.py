"""Reader for the COCO 2017 layout (real or embedded): `<split>/` images + `annotations/instances_<split>.json`."""
from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from pycocotools.coco import COCO

from pipeline.data.errors import DatasetLayoutError
from pipeline.data.paths import inside_root

REQUIRED_KEYS = ("images", "annotations", "categories")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
BBOX_TOLERANCE = 1e-3


@dataclass
class CocoSplit:
    """One split of a COCO-layout dataset with its loaded (and indexed) annotations."""

    root: Path
    split: str
    images_dir: Path
    ann_file: Path
    coco: COCO
    follow_external_symlinks: bool = False  # see image_path


def read_coco(root: Path, split: str, *, follow_external_symlinks: bool = False) -> CocoSplit:
    """Load `root/annotations/instances_<split>.json` for the images in `root/<split>/`, checking the basics."""
    root = Path(root)
    images_dir, ann_file = root / split, root / "annotations" / f"instances_{split}.json"
    if not images_dir.is_dir():
        raise DatasetLayoutError(f"{images_dir}: expected the COCO image folder of split {split!r}")
    if not ann_file.is_file():
        raise DatasetLayoutError(f"{ann_file}: expected the COCO annotation file of split {split!r}")
    try:
        with ann_file.open() as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetLayoutError(f"{ann_file}: invalid JSON at line {e.lineno} column {e.colno} "
                                 f"(char {e.pos}): {e.msg}") from e
    _check(ann_file, data)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress messages
        coco.createIndex()
    return CocoSplit(root, split, images_dir, ann_file, coco, follow_external_symlinks)


def image_path(split: CocoSplit, image_id) -> Path:
    """`<split>/<file_name>` of one image, checked before anything opens it: a file_name leaving the dataset
    root (`..`, an absolute path) raises PathOutsideRootError naming the annotation file and the image, and
    so does a symlink resolving outside the root unless the split allows external symlinks."""
    return inside_root(split.root, split.coco.imgs[image_id].get("file_name", ""), base=split.images_dir,
                       source=split.ann_file, what=f"image id {image_id} file_name",
                       follow_external_symlinks=split.follow_external_symlinks)


def _check(ann_file: Path, data) -> None:
    if not isinstance(data, dict):
        raise DatasetLayoutError(f"{ann_file}: expected a JSON object with keys {', '.join(REQUIRED_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise DatasetLayoutError(f"{ann_file}: missing top-level key(s) {', '.join(missing)}")
    # pycocotools indexes images and categories by 'id': without it, it would fail with a bare KeyError.
    for key, required in (("images", ("id",)), ("categories", ("id",)), ("annotations", ANNOTATION_KEYS)):
        if not isinstance(data[key], list):
            raise DatasetLayoutError(f"{ann_file}: '{key}' must be a list")
        for i, record in enumerate(data[key]):
            lacking = [k for k in required if not isinstance(record, dict) or k not in record]
            if lacking:
                raise DatasetLayoutError(f"{ann_file}: {key} entry #{i} lacks {', '.join(lacking)}")


def coco_tables(split: CocoSplit) -> tuple[list[dict], list[dict]]:
    """Per-image and per-annotation rows for validation (paths relative to the dataset root)."""
    coco, ann_rel = split.coco, split.ann_file.relative_to(split.root).as_posix()
    image_rows, exists = [], {}
    for image_id, img in coco.imgs.items():
        file = image_path(split, image_id)
        exists[image_id] = file.is_file()
        image_rows.append({"path": f"{split.split}/{img.get('file_name', '')}", "split": split.split,
                           "image_id": image_id, "declared_width": img.get("width"),
                           "declared_height": img.get("height"), "file": file})
    ann_rows = []
    for ann_id, ann in coco.anns.items():
        img = coco.imgs.get(ann["image_id"])
        box = _bbox(ann["bbox"])
        ann_rows.append({
            "path": f"{ann_rel}#ann={ann_id}", "split": split.split, "ann_id": ann_id,
            "image_id": ann["image_id"], "category_id": ann["category_id"],
            "image_exists": exists.get(ann["image_id"], False), "category_known": ann["category_id"] in coco.cats,
            "bbox_inside": img is not None and box is not None and _inside(box, img),
            "bbox_positive": box is not None and box[2] > 0 and box[3] > 0,
        })
    return image_rows, ann_rows


def _bbox(value) -> tuple[float, float, float, float] | None:
    """The bbox as 4 floats, or None when it is not a list of 4 numbers."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    return tuple(float(v) for v in value)


def _inside(box, img: dict) -> bool:
    x, y, w, h = box
    width, height = img.get("width"), img.get("height")
    if not isinstance(width, (int, float)) or not isinstance(height, (int, float)):
        return False
    tol = BBOX_TOLERANCE
    return x >= -tol and y >= -tol and x + w <= width + tol and y + h <= height + tol
