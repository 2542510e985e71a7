"""Manifests: one row per image (and per COCO annotation) with what validation and conversion need.

The tables follow the contract of `pipeline.validation`: every table has a `path` column naming the
row (relative to its dataset root) and image tables carry width, height, mode, bytes, decodes, error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .probe import probe_many
from .readers_coco import coco_tables, read_coco
from .readers_imagefolder import class_set, read_imagefolder
from .readers_sysu import read_sysu


def _with_probe(rows: list[dict], files: list[Path], desc: str) -> pd.DataFrame:
    for row, probe in zip(rows, probe_many(files, desc=desc)):
        row.update(probe)
    return pd.DataFrame(rows)


def classification_tables(root: Path, splits: tuple[str, ...], *,
                          follow_external_symlinks: bool = False) -> dict[str, pd.DataFrame]:
    """`classification` (per image) and `classification_counts` (per split x class, zeros included)."""
    classes = class_set(root, splits[0])
    rows, files, counts = [], [], []
    for split in splits:
        listing = read_imagefolder(root, split, classes, follow_external_symlinks=follow_external_symlinks)
        for img in listing.images:
            rows.append({"path": img.rel, "split": split, "class_name": img.class_name, "label": img.label})
            files.append(img.path)
        present = {}
        for img in listing.images:
            present[img.class_name] = present.get(img.class_name, 0) + 1
        counts += [{"path": f"{split}/{c}", "split": split, "class_name": c, "count": present.get(c, 0)}
                   for c in classes]
    return {"classification": _with_probe(rows, files, "probing classification images"),
            "classification_counts": pd.DataFrame(counts)}


def sysu_tables(root: Path, *, follow_external_symlinks: bool = False) -> dict[str, pd.DataFrame]:
    """`sysu`: per image, with `has_gallery_match` for queries (same identity on another camera)."""
    images = read_sysu(root, follow_external_symlinks=follow_external_symlinks)
    rows = [{"path": im.rel, "split": im.split, "identity": im.identity, "label": im.label,
             "camera": im.camera, "is_distractor": im.is_distractor} for im in images]
    table = _with_probe(rows, [im.path for im in images], "probing SYSU-30k images")
    return {"sysu": add_gallery_match(table)}


def add_gallery_match(sysu: pd.DataFrame) -> pd.DataFrame:
    """Only a gallery image of the same identity on another camera counts as a match (SYSU protocol)."""
    gallery = sysu[(sysu["split"] == "gallery") & ~sysu["is_distractor"].astype(bool)]
    cams: dict[str, set[int]] = {}
    for ident, cam in zip(gallery["identity"], gallery["camera"]):
        cams.setdefault(str(ident), set()).add(int(cam))
    match = [s != "query" or bool(cams.get(str(i), set()) - {int(c)})
             for s, i, c in zip(sysu["split"], sysu["identity"], sysu["camera"])]
    return sysu.assign(has_gallery_match=match)


def refresh_derived(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Recompute the cross-row columns after rows were left out (quarantine): class counts, gallery
    matches, and whether an annotation's image is still listed."""
    out = dict(tables)
    if "classification_counts" in out and "classification" in out:
        present = out["classification"].groupby(["split", "class_name"]).size()
        counts = out["classification_counts"]
        out["classification_counts"] = counts.assign(
            count=[int(present.get((s, c), 0)) for s, c in zip(counts["split"], counts["class_name"])])
    if "sysu" in out and len(out["sysu"]):
        out["sysu"] = add_gallery_match(out["sysu"])
    if "coco_annotations" in out and "coco_images" in out and len(out["coco_annotations"]):
        listed = set(zip(out["coco_images"]["split"], out["coco_images"]["image_id"]))
        anns = out["coco_annotations"]
        still = [(s, i) in listed for s, i in zip(anns["split"], anns["image_id"])]
        out["coco_annotations"] = anns.assign(image_exists=anns["image_exists"].astype(bool) & np.array(still))
    return out


def coco_tables_for(root: Path, splits: tuple[str, ...], *,
                    follow_external_symlinks: bool = False) -> dict[str, pd.DataFrame]:
    """`coco_images` (with size_matches against the json) and `coco_annotations`."""
    image_rows, files, ann_rows = [], [], []
    for split in splits:
        imgs, anns = coco_tables(read_coco(root, split, follow_external_symlinks=follow_external_symlinks))
        for r in imgs:
            files.append(r.pop("file"))
            image_rows.append(r)
        ann_rows += anns
    images = _with_probe(image_rows, files, "probing COCO images")
    if len(images):
        images["size_matches"] = (images["width"] == images["declared_width"]) & (
            images["height"] == images["declared_height"])
    return {"coco_images": images, "coco_annotations": pd.DataFrame(ann_rows)}
