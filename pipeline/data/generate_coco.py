"""Embedded detection / instance-segmentation dataset in the COCO 2017 layout: shapes on textured scenes.

Objects are the shapes of `shapes.SHAPES` (one category each), drawn in random order so that later objects
may occlude earlier ones. Every annotation describes the *visible* part of its object: the segmentation,
area and bbox all come from the same binary visible mask, so they agree exactly.

Two looks (`generate.coco.look`, pipeline/data/look.py):
- `native`: the full palette, textured backgrounds and objects, any rotation, objects may occlude each other;
- `classification`: the classification set's objects in scenes, drawn as that set draws them (its palette,
  colour jitter, background contrast, object texture, rotation range, lighting and blur). Objects do not
  overlap there: with two tones, an occluding object of the same colour would merge with the one behind.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from pipeline.data.generate_common import AtomicDir, item_rng, run_jobs, save_jpeg
from pipeline.data.look import ClassificationLook
from pipeline.data.shapes import (
    PALETTE, SHAPES, composite, jitter_colour, place, polygon_mask, shape_polygons, texture, to_image,
)

DOMAIN = 20_170  # item_rng namespace of this generator (other generators use other constants)
SPLITS = ("train2017", "val2017")
MIN_VISIBLE = 0.35  # an object covered beyond this fraction of its own mask is not placed
PLACEMENT_TRIES = 8
INFO = {  # fixed, so the same seed gives the same bytes
    "description": "Embedded COCO-layout shapes dataset (procedurally generated)",
    "version": "1.0", "year": 2017, "date_created": "2017/09/01", "contributor": "pipeline.data.generate_coco",
}


def mask_to_polygons(mask: np.ndarray) -> list[list[int]]:
    """Hole-free polygons whose union is exactly the pixels of a binary mask.

    COCO polygons cannot have holes, but a ring, or an object with a smaller one on top of it, has
    them. So (for every object, not only 'ring') the mask is cut into stacks of row runs in which each
    run overlaps exactly one run of the next row; each stack's outline is a simple staircase polygon
    along pixel borders (pixel (x, y) covers [x, x+1] x [y, y+1]), which pycocotools rasterises back
    to the same pixels.
    """
    stacks: list[list[tuple[int, int, int]]] = []  # rows (y, x0, x1) of each piece
    previous: dict[tuple[int, int], int] = {}  # runs (x0, x1) of the previous row -> their piece
    for y in range(mask.shape[0]):
        runs = _runs(mask[y])
        # Runs overlapping in a column are 4-connected; a piece continues only through one-to-one links.
        links = {r: [p for p in previous if p[0] < r[1] and r[0] < p[1]] for r in runs}
        fan_out = {p: sum(p in ps for ps in links.values()) for p in previous}
        current = {}
        for r in runs:
            ps = links[r]
            if len(ps) == 1 and fan_out[ps[0]] == 1:
                current[r] = previous[ps[0]]
            else:  # a new part, a branch or a merge: start a new piece
                current[r] = len(stacks)
                stacks.append([])
            stacks[current[r]].append((y, *r))
        previous = current
    return [_staircase(stack) for stack in stacks]


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a boolean row as (start, end exclusive)."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _staircase(stack: list[tuple[int, int, int]]) -> list[int]:
    left = [p for y, x0, _ in stack for p in ((x0, y), (x0, y + 1))]
    right = [p for y, _, x1 in reversed(stack) for p in ((x1, y + 1), (x1, y))]
    pts = _drop_collinear(left + right)
    return [c for p in pts for c in p]


def _drop_collinear(pts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for i, p in enumerate(pts):
        a, b = pts[i - 1], pts[(i + 1) % len(pts)]
        if not ((a[0] == p[0] == b[0]) or (a[1] == p[1] == b[1])):
            out.append(p)
    return out


def _place_objects(rng: np.random.Generator, w: int, h: int, n_objects: int, classes: Sequence[str],
                   max_angle: float = np.pi, min_visible: float = MIN_VISIBLE):
    """Choose (class index, anti-aliased uint8 mask) per object, keeping each one visible enough."""
    objects: list[tuple[int, np.ndarray]] = []
    for _ in range(n_objects):
        for _ in range(PLACEMENT_TRIES):
            radius = rng.uniform(0.15, 0.32) * min(w, h)
            cx, cy = rng.uniform(0.6 * radius, w - 0.6 * radius), rng.uniform(0.6 * radius, h - 0.6 * radius)
            cls = int(rng.integers(len(classes)))
            angle = rng.uniform(0, 2 * np.pi) if max_angle >= np.pi else rng.uniform(-max_angle, max_angle)
            polys = place(shape_polygons(classes[cls]), cx, cy, radius, angle, flip=bool(rng.random() < 0.5))
            candidate = objects + [(cls, np.asarray(polygon_mask((w, h), polys)))]
            if all(v >= min_visible for v in _visible_fractions(candidate)):
                objects = candidate
                break
    return objects


def _visible_masks(objects) -> list[np.ndarray]:
    """Binary visible mask of each object: its own mask minus everything drawn after it."""
    out, covered = [], np.zeros(objects[0][1].shape, dtype=bool)
    for _, mask in reversed(objects):
        own = mask >= 128
        out.append(own & ~covered)
        covered |= own
    return out[::-1]


def _visible_fractions(objects) -> list[float]:
    return [v.sum() / max((m >= 128).sum(), 1) for v, (_, m) in zip(_visible_masks(objects), objects)]


def _annotation(visible: np.ndarray, category_id: int) -> dict:
    ys, xs = np.nonzero(visible)
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "category_id": category_id, "iscrowd": 0, "area": int(visible.sum()),
        "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
        "segmentation": mask_to_polygons(visible),
    }


def render_image(seed: int, split_key: int, index: int, cfg: dict, classes: Sequence[str],
                 look: ClassificationLook | None = None):
    """Draw one image; returns (PIL image, annotations without ids/image ids). `look`: the classification
    look (None: native)."""
    rng = item_rng(seed, DOMAIN, split_key, index)
    w, h = (int(rng.integers(cfg["min_size"], cfg["max_size"] + 1)) for _ in range(2))
    if look is not None:
        return _render_classification_look(rng, w, h, cfg, classes, look)
    bg_idx = rng.choice(len(PALETTE), 2, replace=False)
    img = texture(rng, w, h, jitter_colour(rng, PALETTE[bg_idx[0]]), jitter_colour(rng, PALETTE[bg_idx[1]]))
    objects = _place_objects(rng, w, h, int(rng.integers(1, cfg["max_objects"] + 1)), classes)
    # Object colours avoid the background's main colour so every object stands out from its scene.
    choices = [i for i in range(len(PALETTE)) if i != bg_idx[0]]
    for _, mask in objects:
        a = jitter_colour(rng, PALETTE[rng.choice(choices)])
        fill = texture(rng, w, h, a, a * rng.uniform(0.6, 0.9), kind=str(rng.choice(["flat", "gradient", "stripes"])))
        img = composite(img, fill, Image.fromarray(mask))
    anns = [_annotation(v, cls + 1) for v, (cls, _) in zip(_visible_masks(objects), objects) if v.any()]
    return to_image(img, blur=rng.uniform(0.0, 0.5)), anns


def _render_classification_look(rng, w: int, h: int, cfg: dict, classes: Sequence[str], look: ClassificationLook):
    """Objects drawn as the classification generator draws its one object, several per scene, no overlap."""
    pal = look.palette
    bg, fg = (pal[i] for i in rng.choice(len(pal), 2, replace=False))  # object and scene always differ
    img = look.background(rng, w, h, bg)
    objects = _place_objects(rng, w, h, int(rng.integers(1, cfg["max_objects"] + 1)), classes,
                             max_angle=np.radians(look.rotation), min_visible=1.0)
    for _, mask in objects:
        textured = rng.random() < look.object_texture
        fill = texture(rng, w, h, look.jitter(rng, fg), look.jitter(rng, pal[rng.integers(len(pal))]),
                       kind=str(rng.choice(["stripes", "noise"])) if textured else "flat")
        img = composite(img, fill, Image.fromarray(mask))
    img = img * rng.uniform(0.75, 1.15) + rng.normal(0, 4, img.shape)  # lighting + sensor noise
    anns = [_annotation(v, cls + 1) for v, (cls, _) in zip(_visible_masks(objects), objects) if v.any()]
    return to_image(img, blur=float(rng.uniform(0, 0.6))), anns


def _write(job: tuple) -> tuple[int, int, list[dict]]:
    path, seed, split_key, index, cfg, classes, look = job
    img, anns = render_image(seed, split_key, index, cfg, classes, look)
    save_jpeg(img, Path(path), int(cfg["jpeg_quality"]))
    return img.width, img.height, anns


def _split_json(results, image_ids: list[int], split: str, categories: list[dict], seed: int) -> dict:
    images, annotations = [], []
    for image_id, (w, h, anns) in zip(image_ids, results):
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": w, "height": h})
        for ann in anns:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": image_id})
    return {"info": {**INFO, "description": f"{INFO['description']}, {split}, seed {seed}"}, "licenses": [],
            "images": images, "annotations": annotations, "categories": categories}


def generate_coco(out_dir: Path, cfg: dict, seed: int, classes: Sequence[str],
                  look: ClassificationLook | None = None) -> dict:
    """Write the embedded COCO-layout dataset under out_dir (atomically) and return its counts. `look`: draw
    in the classification set's look (None: the native look)."""
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or not classes:
        raise ValueError(f"COCO classes must be a non-empty subset of {', '.join(SHAPES)}; got {list(classes)}")
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(classes)]
    stats, next_id = {}, 1
    with AtomicDir(Path(out_dir)) as tmp:
        for split_key, split in enumerate(SPLITS):
            n = int(cfg["train_images" if split == "train2017" else "val_images"])
            ids = list(range(next_id, next_id + n))
            next_id += n
            jobs = [(str(tmp / split / f"{i:012d}.jpg"), seed, split_key, i, cfg, tuple(classes), look) for i in ids]
            data = _split_json(run_jobs(_write, jobs, desc=f"coco {split}"), ids, split, categories, seed)
            ann_file = tmp / "annotations" / f"instances_{split}.json"
            ann_file.parent.mkdir(parents=True, exist_ok=True)
            ann_file.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))
            stats[f"{split}_images"], stats[f"{split}_annotations"] = n, len(data["annotations"])
    return stats
