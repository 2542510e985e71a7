"""Embedded ImageNet-style classification set: procedurally drawn shapes in an ImageFolder layout.

The class is the silhouette of the main object. Everything else is nuisance drawn independently of the
class: object and background colours from one shared palette (no per-image colour shortcut: see
docs/method.md section 5), background texture, object scale, rotation, mirror and position,
distractor blobs and lighting. The BYOL augmentations (crop, flip, colour jitter, grayscale, blur) are
exactly the invariances that remove these nuisances, so self-supervision has a class signal to find.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import shapes
from .generate_common import AtomicDir, item_rng, run_jobs, save_jpeg

DOMAIN = 1  # separates this generator's random streams from the other datasets'
SPLITS = ("train", "val")


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
        if not 2 <= self.classes <= len(shapes.SHAPES):
            raise ValueError(f"generate.classification.classes = {self.classes}: expected 2..{len(shapes.SHAPES)}")
        return list(shapes.SHAPES[: self.classes])


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
    polys = shapes.place(shapes.shape_polygons(shapes.SHAPES[label]), cx, cy, radius, angle,
                         flip=bool(rng.integers(2)))
    textured = rng.random() < spec.object_texture
    fill = shapes.texture(rng, s, s, jitter(fg_a), jitter(fg_b),
                          kind=rng.choice(["stripes", "noise"]) if textured else "flat")
    canvas = shapes.composite(canvas, fill, shapes.polygon_mask((s, s), polys))

    canvas = canvas * rng.uniform(0.75, 1.15) + rng.normal(0, 4, canvas.shape)  # lighting + sensor noise
    return shapes.to_image(canvas, blur=float(rng.uniform(0, 0.6)))


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
