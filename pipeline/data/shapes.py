"""Drawing primitives for the embedded datasets: shapes as polygons, textures, palettes.

Every shape is a list of polygons in unit coordinates (centred on 0, radius about 1), so the same
geometry gives a filled mask for classification/re-id images and an exact COCO polygon segmentation.
All randomness comes from a `numpy.random.Generator` passed in, which keeps generation deterministic.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Shapes whose silhouettes stay distinct under rotation, scaling and flips (no square vs diamond).
SHAPES = (
    "circle", "square", "triangle", "star", "cross", "ring",
    "hexagon", "arrow", "crescent", "heart", "pentagon", "lshape",
)

# A shared palette: object and background colours are drawn from it independently of the class, so
# colour carries no class information and (being shared by many images) little instance information. The
# first two entries are a light and a dark neutral: `palette_size: 2` gives two-tone images whose only
# colour cue is the polarity (light on dark or dark on light).
PALETTE = np.array(
    [
        (225, 225, 225), (35, 35, 35), (214, 63, 58), (58, 120, 214), (62, 170, 84), (230, 190, 50),
        (150, 80, 190), (235, 130, 40), (40, 180, 190), (150, 110, 70), (230, 120, 170), (20, 40, 90),
    ],
    dtype=np.float32,
)


def _regular(n: int, phase: float = 0.0) -> list[tuple[float, float]]:
    return [(math.cos(phase + 2 * math.pi * i / n), math.sin(phase + 2 * math.pi * i / n)) for i in range(n)]


def _circle(r: float = 1.0, n: int = 40, sx: float = 1.0) -> list[tuple[float, float]]:
    return [(sx * r * x, r * y) for x, y in _regular(n)]


def shape_polygons(name: str) -> list[list[tuple[float, float]]]:
    """Polygons (outer outlines; 'holes' are listed after a shape's outline and drawn as cut-outs)."""
    if name == "circle":
        return [_circle()]
    if name == "square":
        return [[(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]]
    if name == "triangle":
        return [_regular(3, -math.pi / 2)]
    if name == "pentagon":
        return [_regular(5, -math.pi / 2)]
    if name == "hexagon":
        return [_regular(6)]
    if name == "star":
        pts = []
        for i in range(10):
            r = 1.0 if i % 2 == 0 else 0.42
            a = -math.pi / 2 + math.pi * i / 5
            pts.append((r * math.cos(a), r * math.sin(a)))
        return [pts]
    if name == "cross":
        w = 0.3
        return [[(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w),
                 (-1, -w), (-w, -w)]]
    if name == "lshape":
        return [[(-0.8, -1), (-0.2, -1), (-0.2, 0.4), (0.8, 0.4), (0.8, 1), (-0.8, 1)]]
    if name == "arrow":
        return [[(-1, -0.25), (0.2, -0.25), (0.2, -0.65), (1, 0), (0.2, 0.65), (0.2, 0.25), (-1, 0.25)]]
    if name == "ring":
        return [_circle(1.0), _circle(0.55)]  # second polygon is the hole
    if name == "crescent":
        outer = _circle(1.0, 48)
        # The part of the unit disc outside a shifted disc, sampled as one simple polygon.
        pts = [p for p in outer if (p[0] - 0.45) ** 2 + p[1] ** 2 > 0.8 ** 2]
        inner = [(0.45 + 0.8 * x, 0.8 * y) for x, y in _regular(48)]
        inner = [p for p in inner if p[0] ** 2 + p[1] ** 2 < 1.0]
        inner.sort(key=lambda p: -math.atan2(p[1], p[0] - 0.45) % (2 * math.pi))
        pts.sort(key=lambda p: math.atan2(p[1], p[0]) % (2 * math.pi))
        return [_close_crescent(pts, inner)]
    if name == "heart":
        pts = []
        for i in range(48):
            t = 2 * math.pi * i / 48
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x / 17, y / 17 + 0.1))
        return [pts]
    raise ValueError(f"unknown shape {name!r}; expected one of {', '.join(SHAPES)}")


def _close_crescent(outer_arc, inner_arc):
    # Outer arc runs counter-clockwise over the visible part; the inner arc closes it back.
    a = sorted(outer_arc, key=lambda p: (math.atan2(p[1], p[0]) - 0.7) % (2 * math.pi))
    b = sorted(inner_arc, key=lambda p: -((math.atan2(p[1], p[0] - 0.45) - 0.7) % (2 * math.pi)))
    return a + b


def place(polys, cx: float, cy: float, radius: float, angle: float, flip: bool = False):
    """Scale, rotate, optionally mirror and translate unit polygons into pixel coordinates."""
    c, s = math.cos(angle), math.sin(angle)
    out = []
    for poly in polys:
        pts = []
        for x, y in poly:
            if flip:
                x = -x
            pts.append((cx + radius * (c * x - s * y), cy + radius * (s * x + c * y)))
        out.append(pts)
    return out


def polygon_mask(size: tuple[int, int], polys, supersample: int = 4) -> Image.Image:
    """Anti-aliased L-mode mask of placed polygons (first filled, later ones cut out as holes)."""
    w, h = size
    big = Image.new("L", (w * supersample, h * supersample), 0)
    draw = ImageDraw.Draw(big)
    for i, poly in enumerate(polys):
        draw.polygon([(x * supersample, y * supersample) for x, y in poly], fill=255 if i == 0 else 0)
    return big.resize((w, h), Image.Resampling.BOX)


def jitter_colour(rng: np.random.Generator, base: np.ndarray, amount: float = 12.0) -> np.ndarray:
    return np.clip(base + rng.normal(0, amount, 3), 0, 255)


def texture(rng: np.random.Generator, w: int, h: int, colour_a: np.ndarray, colour_b: np.ndarray,
            kind: str | None = None, amplitude: tuple[float, float] = (0.3, 1.0)) -> np.ndarray:
    """An HxWx3 float image mixing two colours with a random texture (noise, stripes, checks, gradient)."""
    kind = kind or rng.choice(["noise", "stripes", "checks", "gradient", "flat"])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "noise":
        g = rng.random((4 + h // 16, 4 + w // 16)).astype(np.float32)
        t = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                       dtype=np.float32) / 255.0
    elif kind == "stripes":
        a = rng.uniform(0, math.pi)
        period = rng.uniform(5, 14)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(a) + yy * math.sin(a)) / period)
    elif kind == "checks":
        p = int(rng.integers(4, 11))
        t = (((xx // p) + (yy // p)) % 2).astype(np.float32)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(a) + yy * math.sin(a))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    else:
        t = np.full((h, w), 0.5, dtype=np.float32)
    t = t[..., None] * rng.uniform(*amplitude)
    return colour_a[None, None, :] * (1 - t) + colour_b[None, None, :] * t


def composite(background: np.ndarray, foreground: np.ndarray, mask: Image.Image) -> np.ndarray:
    m = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    return background * (1 - m) + foreground * m


def to_image(arr: np.ndarray, blur: float = 0.0) -> Image.Image:
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else img


def polygon_area(poly) -> float:
    """Shoelace area of one polygon in pixels."""
    a = 0.0
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
        a += x0 * y1 - x1 * y0
    return abs(a) / 2.0
