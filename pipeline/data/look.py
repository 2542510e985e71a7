"""The classification set's look, shared by the SYSU-30k and COCO generators (`generate.<dataset>.look`).

One visual world, as in reality: ImageNet's objects are what COCO scenes hold and what people wear. With
`look: classification`, the re-id and detection sets are drawn with the classification set's palette, colour
jitter, background contrast, object texture and rotation range (`generate.classification`), so that what a
backbone learns from the classification images is what the downstream sets need (docs/evaluation.md,
"Sensitive evaluations"). `look: native` keeps each generator's own richer look.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import PALETTE, jitter_colour, texture

LOOKS = ("native", "classification")


@dataclass(frozen=True)
class ClassificationLook:
    """What makes a classification image look the way it does (generate.classification's keys)."""

    palette_size: int
    colour_jitter: float
    background_contrast: tuple[float, float]
    object_texture: float
    rotation: float  # degrees, either way

    @classmethod
    def from_dict(cls, d: dict) -> "ClassificationLook":
        return cls(int(d["palette_size"]), float(d["colour_jitter"]), tuple(d["background_contrast"]),
                   float(d["object_texture"]), float(d["rotation"]))

    @property
    def palette(self) -> np.ndarray:
        return PALETTE[: self.palette_size]

    def jitter(self, rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
        return jitter_colour(rng, colour, self.colour_jitter)

    def background(self, rng: np.random.Generator, w: int, h: int, main: np.ndarray) -> np.ndarray:
        """A background of main colour `main`, textured with the classification set's contrast."""
        second = self.palette[rng.integers(len(self.palette))]
        return texture(rng, w, h, self.jitter(rng, main), self.jitter(rng, second), amplitude=self.background_contrast)


def look_for(name: str, classification: dict) -> ClassificationLook | None:
    """`generate.<dataset>.look` -> the look to draw with (None: the generator's native look)."""
    if name not in LOOKS:
        raise ValueError(f"look {name!r}: expected one of {', '.join(LOOKS)}")
    return ClassificationLook.from_dict(classification) if name == "classification" else None
