"""Embedded ImageNet-style classification set: procedurally drawn shapes in an ImageFolder layout.

The class is the silhouette of the main object. Everything else is nuisance drawn independently of the
class: object and background colours from one shared palette (no per-image colour shortcut: see
docs/method.md section 5), background texture, object scale, rotation, mirror and position,
distractor blobs and lighting. The BYOL augmentations (crop, flip, colour jitter, grayscale, blur) are
exactly the invariances that remove these nuisances, so self-supervision has a class signal to find.

Up to 12 classes, a class is one shape (`shapes.SHAPES`). Beyond, classes are composed from the vocabulary:
shape x pattern (solid, stripes, outline, holed) x layout (one object, a pair, a triple), 144 at most, so
that a many-class world (docs/worlds.md) keeps the expected number of same-class negatives per query, (batch
- 1) / classes, near the paper's ImageNet regime. The first 12 classes are the plain shapes: a 10-class set
is the same whatever the vocabulary allows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import shapes
from .generate_common import AtomicDir, item_rng, run_jobs, save_jpeg

DOMAIN = 1  # separates this generator's random streams from the other datasets'
SPLITS = ("train", "val")
PATTERNS = ("solid", "stripes", "outline", "holed")
LAYOUTS = ("one", "pair", "triple")
MAX_CLASSES = len(shapes.SHAPES) * len(PATTERNS) * len(LAYOUTS)


def class_parts(label: int) -> tuple[str, str, str]:
    """(shape, pattern, layout) of class `label`: shapes vary fastest, then patterns, then layouts."""
    n, p = len(shapes.SHAPES), len(PATTERNS)
    return shapes.SHAPES[label % n], PATTERNS[(label // n) % p], LAYOUTS[label // (n * p)]


def class_name(label: int) -> str:
    shape, pattern, layout = class_parts(label)
    return shape if (pattern, layout) == ("solid", "one") else f"{shape}-{pattern}-{layout}"


@dataclass(frozen=True)
class ClassificationSpec:
    classes: int = 10
    image_size: int = 64
    train_per_class: int = 500
    val_per_class: int = 100
    palette_size: int = 8
    colour_jitter: float = 12.0  # per-image std of each channel around its palette colour
    scale: tuple[float, float] = (0.5, 0.85)  # object diameter as a fraction of the image side
    max_distractors: int = 2
    background_contrast: tuple[float, float] = (0.3, 1.0)  # amplitude of the background texture
    object_texture: float = 0.5  # probability that the object is textured rather than flat
    rotation: float = 180.0  # maximum absolute rotation of the object, degrees
    jpeg_quality: int = 90

    @classmethod
    def from_dict(cls, d: dict) -> "ClassificationSpec":
        d = dict(d)
        for key in ("scale", "background_contrast"):
            d[key] = tuple(d.get(key, getattr(cls, key)))
        return cls(**d)

    def class_names(self) -> list[str]:
        if not 2 <= self.classes <= MAX_CLASSES:
            raise ValueError(f"generate.classification.classes = {self.classes}: expected 2..{MAX_CLASSES} "
                             f"({len(shapes.SHAPES)} shapes x {len(PATTERNS)} patterns x {len(LAYOUTS)} layouts)")
        return [class_name(i) for i in range(self.classes)]

    def shape_names(self) -> list[str]:
        """The shapes the classes use, in class order: the vocabulary the COCO and SYSU-30k worlds share."""
        self.class_names()
        return list(dict.fromkeys(class_parts(i)[0] for i in range(self.classes)))


def draw_example(spec: ClassificationSpec, seed: int, split: int, label: int, index: int) -> Image.Image:
    """One image of class `label`; a pure function of its arguments."""
    rng = item_rng(seed, DOMAIN, split, label, index)
    s = spec.image_size
    pal = shapes.PALETTE[: spec.palette_size]
    # Object and background take two different palette colours; the second colour of each texture is free.
    bg_a, fg_a = (pal[i] for i in rng.choice(len(pal), 2, replace=False))
    bg_b, fg_b = (pal[i] for i in rng.choice(len(pal), 2))
    jitter = lambda c: shapes.jitter_colour(rng, c, spec.colour_jitter)  # noqa: E731
    canvas = shapes.texture(rng, s, s, jitter(bg_a), jitter(bg_b), amplitude=spec.background_contrast)
    canvas = _add_distractors(rng, canvas, pal, spec.max_distractors, spec.colour_jitter)

    radius = 0.5 * s * rng.uniform(*spec.scale)
    margin = 0.6 * radius  # allow the object to be partly cut by the border, as in real photos
    cx, cy = rng.uniform(margin, s - margin, 2)
    angle = math.radians(rng.uniform(-spec.rotation, spec.rotation))
    mask = _object_mask(s, *class_parts(label), cx, cy, radius, angle, flip=bool(rng.integers(2)))
    textured = rng.random() < spec.object_texture
    fill = shapes.texture(rng, s, s, jitter(fg_a), jitter(fg_b),
                          kind=rng.choice(["stripes", "noise"]) if textured else "flat")
    canvas = shapes.composite(canvas, fill, mask)

    canvas = canvas * rng.uniform(0.75, 1.15) + rng.normal(0, 4, canvas.shape)  # lighting + sensor noise
    return shapes.to_image(canvas, blur=float(rng.uniform(0, 0.6)))


def _object_mask(s: int, shape: str, pattern: str, layout: str, cx: float, cy: float, radius: float,
                 angle: float, flip: bool) -> Image.Image:
    """Anti-aliased L mask of the class's object(s): `layout` copies of `shape` within `radius` of the
    centre, cut by `pattern`. Draws nothing from the random stream (a class is a pure function of label)."""
    unit = shapes.shape_polygons(shape)
    if layout == "one":
        parts = [(cx, cy, radius)]
    else:  # copies around the centre, turning with the object
        n, r = (2, 0.5 * radius) if layout == "pair" else (3, 0.45 * radius)
        d = radius - r
        parts = [(cx + d * math.cos(angle + 2 * math.pi * j / n), cy + d * math.sin(angle + 2 * math.pi * j / n), r)
                 for j in range(n)]
    mask = np.zeros((s, s), np.float32)
    for x, y, r in parts:
        part = np.asarray(shapes.polygon_mask((s, s), shapes.place(unit, x, y, r, angle, flip)), np.float32)
        if pattern == "outline":  # the rim only: the part minus itself shrunk by about a fifth of its radius
            width = 2 * max(1, round(0.2 * r)) + 1
            inner = Image.fromarray(part.astype(np.uint8)).filter(ImageFilter.MinFilter(width))
            part = part - np.asarray(inner, np.float32)
        elif pattern == "holed":  # a round hole in the middle of each part
            hole = np.asarray(shapes.polygon_mask((s, s), shapes.place([shapes.shape_polygons("circle")[0]], x, y,
                                                                        0.35 * r, 0.0)), np.float32)
            part = np.clip(part - hole, 0, 255)
        mask = np.maximum(mask, part)
    if pattern == "stripes":  # bands across the object, turning with it, period half its radius
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        v = (yy - cy) * math.cos(angle) - (xx - cx) * math.sin(angle)
        mask = mask * (np.mod(v / (0.5 * radius), 1.0) < 0.55)
    return Image.fromarray(mask.astype(np.uint8), "L")


def _add_distractors(rng, canvas: np.ndarray, pal: np.ndarray, max_n: int, jitter: float) -> np.ndarray:
    """Small blobs and strokes: clutter that belongs to no class."""
    h, w, _ = canvas.shape
    n = int(rng.integers(0, max_n + 1))
    if n == 0:
        return canvas
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(n):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.04, 0.1) * w
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r * rng.uniform(0.4, 1), x + r, y + r], fill=255)
        else:
            a = rng.uniform(0, math.pi)
            draw.line([x, y, x + 3 * r * math.cos(a), y + 3 * r * math.sin(a)], fill=255, width=max(1, int(r / 2)))
    colour = shapes.jitter_colour(rng, pal[rng.integers(len(pal))], jitter)
    return shapes.composite(canvas, np.broadcast_to(colour, canvas.shape), mask)


def _write_one(job) -> str:
    spec, seed, root, split_idx, label, index = job
    name = spec.class_names()[label]
    rel = f"{SPLITS[split_idx]}/{name}/{name}_{SPLITS[split_idx]}_{index:05d}.jpg"
    save_jpeg(draw_example(spec, seed, split_idx, label, index), Path(root) / rel, spec.jpeg_quality)
    return rel


def generate_classification(out_dir: Path, cfg: dict, seed: int) -> dict:
    """Write `train/<class>/*.jpg` and `val/<class>/*.jpg` under out_dir; return counts."""
    spec = ClassificationSpec.from_dict(cfg)
    names = spec.class_names()
    per_split = (spec.train_per_class, spec.val_per_class)
    with AtomicDir(Path(out_dir)) as tmp:
        jobs = [(spec, seed, str(tmp), si, label, i)
                for si in range(len(SPLITS)) for label in range(len(names)) for i in range(per_split[si])]
        run_jobs(_write_one, jobs, desc="classification images")
    return {"classes": len(names), "train_images": spec.train_per_class * len(names),
            "val_images": spec.val_per_class * len(names)}
