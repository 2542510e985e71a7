"""The views a loader benchmark cuts from each image, from a `--views` spec (`python -m pipeline.bench loader`).

    2x32            two views of 32 px (BYOL's pair), scale convert.loader.crop_scale
    2x32+6x16       multi-crop: the pair and six 16 px small views (scale convert.loader.local_crop_scale)
    2x224@0.14-1+6x96@0.05-0.14     the same with explicit scale ranges
    patches:20x32@0.25               EMP-SSL: 20 square patches of 32 px, each a quarter of the image area

`ViewLayout.loader_kwargs()` configures `pipeline.loaders.ssl.SSLLoader`; the torchvision reference
(`bench/torchvision_ssl.py`) builds the same views from the layout.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_GROUP = re.compile(r"^(\d+)x(\d+)(?:@([0-9.]+)(?:-([0-9.]+))?)?$")


@dataclass(frozen=True)
class ViewLayout:
    size: int
    scale: tuple[float, float]
    local_views: int = 0
    local_size: int | None = None
    local_scale: tuple[float, float] = (0.05, 0.25)
    patches: int = 0  # EMP-SSL: `patches` views of `size` at scale[0], square; no pair, no small views

    @property
    def views_per_image(self) -> int:
        return self.patches or 2 + self.local_views

    def describe(self) -> str:
        if self.patches:
            return f"patches:{self.patches}x{self.size}@{self.scale[0]:g}"
        pair = f"2x{self.size}@{self.scale[0]:g}-{self.scale[1]:g}"
        small = f"+{self.local_views}x{self.local_size}@{self.local_scale[0]:g}-{self.local_scale[1]:g}"
        return pair + (small if self.local_views else "")

    def loader_kwargs(self) -> dict:
        if self.patches:
            return {"image_size": self.size, "patches": self.patches, "patch_scale": self.scale[0]}
        return {"image_size": self.size, "crop_scale": self.scale, "local_views": self.local_views,
                "local_size": self.local_size, "local_crop_scale": self.local_scale}


def parse_views(spec: str, crop_scale=(0.08, 1.0), local_crop_scale=(0.05, 0.25)) -> ViewLayout:
    """The layout `spec` names (module docstring); scales default to the given ones. ValueError naming the part."""
    patches = spec.startswith("patches:")
    parts = spec.removeprefix("patches:").split("+")
    groups = []
    for part in parts:
        m = _GROUP.match(part.strip())
        if not m:
            raise ValueError(f"--views {spec!r}: {part!r} is not NxSIZE[@LOW[-HIGH]] (e.g. 2x32, 6x16@0.05-0.25)")
        count, size = int(m[1]), int(m[2])
        low = float(m[3]) if m[3] else None
        high = float(m[4]) if m[4] else low
        if count < 1 or size < 1 or (low is not None and not 0 < low <= high <= 1):
            raise ValueError(f"--views {spec!r}: {part!r} needs a count and size >= 1 and 0 < LOW <= HIGH <= 1")
        groups.append((count, size, None if low is None else (low, high)))
    if patches:
        if len(groups) != 1 or groups[0][0] < 2 or groups[0][2] is None or groups[0][2][0] != groups[0][2][1]:
            raise ValueError(f"--views {spec!r}: EMP-SSL patches are one group of at least 2, with one scale "
                             "(patches:20x32@0.25)")
        count, size, (scale, _) = groups[0]
        return ViewLayout(size, (scale, scale), patches=count)
    if groups[0][0] != 2 or len(groups) > 2:
        raise ValueError(f"--views {spec!r}: expected the pair of large views first (2xSIZE) and at most one group "
                         "of small views after it (2x32+6x16)")
    size, scale = groups[0][1], groups[0][2] or tuple(crop_scale)
    if len(groups) == 1:
        return ViewLayout(size, scale)
    count, local_size, local_scale = groups[1]
    return ViewLayout(size, scale, count, local_size, local_scale or tuple(local_crop_scale))
