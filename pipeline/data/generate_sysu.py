"""Embedded person re-identification dataset in the SYSU-30k layout: procedurally drawn pedestrians.

An identity is a fixed appearance (clothes and their colours, pattern, hair, skin, bag, body proportions)
that depends only on (seed, identity number). The camera decides everything else: the scene (camera 1 an
indoor wall + tiled floor, camera 2 an outdoor street), lighting, scale, position, pose and facing.
So a query (camera 2) and its single gallery match (camera 1) show the same person in a different
picture, and the discrete attribute palettes make many different people share some attributes.

With `generate.sysu.look: classification` (pipeline/data/look.py) people live in the classification set's
world: clothes and scenes take its palette, colour jitter and background contrast, and every identity
wears one of its shapes (the classification classes) as a large print on the shirt, light on dark or dark
on light. The cameras then differ by what the augmentations model: lighting and colour cast, scale,
position, pose, mirroring and a small tilt of the print.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.data.generate_common import AtomicDir, item_rng, run_jobs, save_jpeg, write_lines
from pipeline.data.look import ClassificationLook
from pipeline.data.shapes import PALETTE, composite, shape_polygons, texture, to_image

DOMAIN = 30_000  # item_rng namespace of this generator (other generators use other constants)
QUERY_CAMERA, GALLERY_CAMERA = 2, 1
DISTRACTOR_ID = "0000others"
TRAIN_DIR, TEST_DIR = "sysu_train_set_all", "sysu_test_set_all"
SPLIT_FOLDERS = {"train": TRAIN_DIR, "query": f"{TEST_DIR}/query", "gallery": f"{TEST_DIR}/gallery"}
# item_rng sub-keys: one identity's appearance, one bag's composition, one image of each kind.
_APPEARANCE, _BAG, _QUERY, _GALLERY, _DISTRACTOR, _TRAIN = range(6)
_SUPERSAMPLE = 3  # the person is drawn at 3x and downsampled, which anti-aliases the edges
EMBLEM_RADIUS = 0.15  # of the shirt print, in body heights: about the torso's width

SHIRTS = np.array([(200, 40, 40), (40, 80, 190), (40, 140, 60), (225, 200, 60), (235, 235, 230), (30, 30, 35),
                   (130, 130, 135), (230, 120, 30), (120, 60, 160), (230, 140, 170), (25, 35, 80),
                   (120, 80, 50), (40, 150, 150)], dtype=np.float32)
TROUSERS = np.array([(30, 30, 35), (40, 55, 100), (100, 130, 175), (190, 170, 120), (110, 110, 115),
                     (90, 60, 40), (220, 220, 210)], dtype=np.float32)
SKINS = np.array([(240, 205, 175), (220, 175, 135), (180, 130, 90), (120, 80, 55)], dtype=np.float32)
HAIRS = np.array([(20, 18, 18), (70, 45, 30), (130, 90, 50), (215, 185, 120), (160, 160, 160)], dtype=np.float32)
SHOES = np.array([(25, 25, 25), (235, 235, 235), (100, 65, 40), (120, 120, 125), (180, 40, 40)], dtype=np.float32)
BAGS = np.array([(25, 25, 25), (110, 70, 40), (170, 30, 40), (30, 45, 90), (95, 100, 95)], dtype=np.float32)
WALLS = np.array([(215, 205, 180), (195, 195, 195), (175, 195, 210), (190, 210, 185), (225, 215, 200)],
                 dtype=np.float32)
FLOORS = np.array([(150, 120, 90), (120, 120, 125), (185, 175, 160), (95, 80, 70)], dtype=np.float32)
FACADES = np.array([(160, 90, 70), (170, 165, 155), (120, 115, 110), (200, 185, 150)], dtype=np.float32)
FOLIAGE = np.array([(60, 110, 50), (90, 130, 60), (40, 80, 45)], dtype=np.float32)
PAVEMENTS = np.array([(120, 118, 115), (150, 140, 125), (90, 90, 95)], dtype=np.float32)
# Per-camera lighting: colour cast (RGB gains) and a brightness range; camera 1 is warm indoor light.
LIGHTING = {1: ((1.08, 1.0, 0.85), (0.75, 0.95)), 2: ((0.92, 1.0, 1.1), (0.95, 1.2))}


@dataclass(frozen=True)
class Appearance:
    """What stays the same for one person on every camera."""

    shirt: tuple
    shirt2: tuple  # stripe / lower-half colour of a patterned shirt
    pattern: str  # plain | stripes | twotone
    long_sleeves: bool
    trousers: tuple
    shorts: bool
    skin: tuple
    hair: tuple
    long_hair: bool
    shoes: tuple
    bag: str  # none | backpack | shoulderbag
    bag_colour: tuple
    build: float  # shoulder/hip width factor
    hip: float  # hip height as a fraction of body height (leg length)
    head: float  # head size factor
    emblem: str | None = None  # a classification-set shape printed on the shirt (look: classification)


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float = 8.0) -> tuple:
    # Drawn once per identity: people wearing the same palette colour still differ slightly.
    return tuple(int(c) for c in np.clip(colour + rng.normal(0, amount, 3), 0, 255))


def _pick(rng: np.random.Generator, table: np.ndarray, amount: float = 8.0) -> tuple:
    return _jitter(rng, table[rng.integers(len(table))], amount)


def appearance(seed: int, identity: int, look: ClassificationLook | None = None,
               emblems: tuple[str, ...] = ()) -> Appearance:
    """The fixed appearance of identity number `identity` (depends only on seed, identity, the look and the
    emblems to choose from). In the classification look, clothes take that look's palette."""
    rng = item_rng(seed, DOMAIN, _APPEARANCE, identity)
    shirts, trousers, shoes, bags = (SHIRTS, TROUSERS, SHOES, BAGS) if look is None else (look.palette,) * 4
    amount = 8.0 if look is None else look.colour_jitter
    shirt_idx = int(rng.integers(len(shirts)))
    shirt2_idx = (shirt_idx + 1 + int(rng.integers(len(shirts) - 1))) % len(shirts)  # never the shirt colour
    return Appearance(
        shirt=_jitter(rng, shirts[shirt_idx], amount), shirt2=_jitter(rng, shirts[shirt2_idx], amount),
        pattern=str(rng.choice(["plain", "stripes", "twotone"], p=[0.5, 0.25, 0.25])),
        long_sleeves=bool(rng.random() < 0.5),
        trousers=_pick(rng, trousers, amount), shorts=bool(rng.random() < 0.2),
        skin=_pick(rng, SKINS, 5), hair=_pick(rng, HAIRS, 5), long_hair=bool(rng.random() < 0.35),
        shoes=_pick(rng, shoes, amount), bag=str(rng.choice(["none", "backpack", "shoulderbag"], p=[0.5, 0.25, 0.25])),
        bag_colour=_pick(rng, bags, amount),
        build=float(rng.uniform(0.85, 1.2)), hip=float(rng.uniform(0.49, 0.55)), head=float(rng.uniform(0.9, 1.1)),
        emblem=str(emblems[rng.integers(len(emblems))]) if emblems else None,
    )


class _Pen:
    """Draws in body coordinates: y from 0 (top of head) to 1 (soles), x in body heights, +x = facing side."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, top: float, height: float, facing: int):
        self.draw, self.cx, self.top, self.h, self.facing = draw, cx, top, height, facing

    def pt(self, x: float, y: float) -> tuple[float, float]:
        s = _SUPERSAMPLE
        return (self.cx + self.facing * x * self.h) * s, (self.top + y * self.h) * s

    def poly(self, pts, colour) -> None:
        self.draw.polygon([self.pt(x, y) for x, y in pts], fill=(*colour, 255))

    def ellipse(self, x: float, y: float, rx: float, ry: float, colour) -> None:
        (x0, y0), (x1, y1) = self.pt(x - rx, y - ry), self.pt(x + rx, y + ry)
        self.draw.ellipse([min(x0, x1), y0, max(x0, x1), y1], fill=(*colour, 255))

    def limb(self, pts, width: float, colour) -> None:
        """A thick polyline with round joints and round ends."""
        self.draw.line([self.pt(x, y) for x, y in pts], fill=(*colour, 255),
                       width=max(1, round(width * self.h * _SUPERSAMPLE)), joint="curve")
        for x, y in (pts[0], pts[-1]):
            self.ellipse(x, y, width / 2, width / 2, colour)


def _shade(colour, factor: float) -> tuple:
    return tuple(int(min(255, c * factor)) for c in colour)


def _chain(x: float, y: float, segments) -> list[tuple[float, float]]:
    """Joint positions of a limb hanging from (x, y): segments are (length, angle from vertical, + = forward)."""
    pts = [(x, y)]
    for length, angle in segments:
        x, y = x + length * math.sin(angle), y + length * math.cos(angle)
        pts.append((x, y))
    return pts


def _draw_legs(pen: _Pen, app: Appearance, stride: float, knee: float) -> None:
    hip_y = app.hip + 0.03
    half = (0.985 - hip_y) / 2
    # Back leg first (darker, partly hidden), the back foot lifted by the bent knee as in walking.
    for side, thigh, shin, shade in ((-1, -stride, -stride - knee, 0.8), (1, stride, stride * 0.5, 1.0)):
        hip, knee_pt, foot = _chain(side * 0.035 * app.build, hip_y, [(half, thigh), (half, shin)])
        if app.shorts:
            pen.limb([knee_pt, foot], 0.05, _shade(app.skin, shade))
            pen.limb([hip, knee_pt], 0.078, _shade(app.trousers, shade))
        else:
            pen.limb([hip, knee_pt, foot], 0.075, _shade(app.trousers, shade))
        fx, fy = foot
        pen.ellipse(fx + 0.03, fy, 0.05, 0.022, _shade(app.shoes, shade))


def _draw_torso(pen: _Pen, app: Appearance, ys: float, yh: float) -> None:
    ws, wh = 0.125 * app.build, 0.1 * app.build
    pen.poly([(-wh - 0.005, yh - 0.03), (wh + 0.005, yh - 0.03), (wh + 0.01, yh + 0.07), (-wh - 0.01, yh + 0.07)],
             app.trousers)  # pelvis, joins the legs
    pen.poly([(-ws, ys + 0.03), (-ws + 0.03, ys), (ws - 0.03, ys), (ws, ys + 0.03), (wh, yh), (-wh, yh)], app.shirt)

    def half_width(y: float) -> float:  # of the trapezoidal torso at height y
        return ws + (wh - ws) * (y - ys) / (yh - ys)

    if app.pattern == "stripes":
        bands = np.arange(ys + 0.05, yh - 0.02, 0.05)
        for y0 in bands:
            y1 = y0 + 0.025
            pen.poly([(-half_width(y0), y0), (half_width(y0), y0), (half_width(y1), y1), (-half_width(y1), y1)],
                     app.shirt2)
    elif app.pattern == "twotone":
        ym = ys + 0.45 * (yh - ys)
        pen.poly([(-half_width(ym), ym), (half_width(ym), ym), (wh, yh), (-wh, yh)], app.shirt2)


def _draw_emblem(pen: _Pen, app: Appearance, ys: float, yh: float, tilt: float) -> None:
    """The identity's shape on the shirt front, in the neutral (light or dark) that contrasts with the shirt."""
    light, dark = PALETTE[0], PALETTE[1]
    colour = tuple(int(c) for c in (dark if sum(app.shirt) > 1.5 * 255 else light))
    r, cx, cy = EMBLEM_RADIUS, 0.0, ys + 0.5 * (yh - ys)
    c, s = math.cos(tilt), math.sin(tilt)
    for i, poly in enumerate(shape_polygons(app.emblem)):  # later polygons are holes: back to the shirt colour
        pen.poly([(cx + r * (c * x - s * y), cy + r * (s * x + c * y)) for x, y in poly], colour if i == 0 else app.shirt)


def _draw_bag(pen: _Pen, app: Appearance, ys: float, yh: float, behind: bool) -> None:
    ws, wh = 0.125 * app.build, 0.1 * app.build
    strap = _shade(app.bag_colour, 0.8)
    if app.bag == "backpack" and behind:
        pen.poly([(-ws - 0.075, ys + 0.02), (-ws + 0.05, ys + 0.02), (-ws + 0.05, ys + 0.25),
                  (-ws - 0.075, ys + 0.25)], app.bag_colour)
    elif app.bag == "backpack":
        for x in (-ws + 0.045, ws - 0.045):
            pen.limb([(x, ys + 0.005), (x * 0.9, ys + 0.2)], 0.02, strap)
    elif app.bag == "shoulderbag" and not behind:
        pen.limb([(ws - 0.04, ys + 0.005), (-wh + 0.01, yh - 0.06)], 0.018, strap)
        pen.poly([(-wh - 0.07, yh - 0.1), (-wh + 0.05, yh - 0.1), (-wh + 0.05, yh + 0.03),
                  (-wh - 0.07, yh + 0.03)], app.bag_colour)


def _draw_arms(pen: _Pen, app: Appearance, ys: float, swing: tuple[float, float],
               elbow: tuple[float, float]) -> None:
    ws = 0.125 * app.build
    for side, a, e in ((-1, swing[0], elbow[0]), (1, swing[1], elbow[1])):
        segments = [(0.16, side * 0.08 + a), (0.15, side * 0.04 + a + e)]  # upper arm, forearm (bent forward)
        shoulder, el, hand = _chain(side * (ws - 0.025), ys + 0.03, segments)
        pen.limb([shoulder, el], 0.055, app.shirt)
        pen.limb([el, hand], 0.048, app.shirt if app.long_sleeves else app.skin)
        pen.ellipse(hand[0], hand[1] + 0.01, 0.024, 0.026, app.skin)


def _draw_head(pen: _Pen, app: Appearance) -> None:
    k = app.head
    pen.poly([(-0.03, 0.12), (0.03, 0.12), (0.03, 0.17), (-0.03, 0.17)], app.skin)  # neck
    if app.long_hair:
        pen.poly([(-0.06 * k, 0.06), (0.0, 0.06), (-0.01, 0.22), (-0.08 * k, 0.22)], app.hair)
    pen.ellipse(-0.01 * k, 0.072, 0.056 * k, 0.066 * k, app.hair)
    pen.ellipse(0.012 * k, 0.085, 0.046 * k, 0.056 * k, app.skin)  # the face, turned to the facing side


def draw_person(app: Appearance, rng: np.random.Generator, size: tuple[int, int], cx: float, top: float,
                height: float) -> Image.Image:
    """An RGBA layer of `size` with the person in a random walking pose and facing (alpha = the person)."""
    w, h = size
    layer = Image.new("RGBA", (w * _SUPERSAMPLE, h * _SUPERSAMPLE), (0, 0, 0, 0))
    pen = _Pen(ImageDraw.Draw(layer), cx, top, height, facing=1 if rng.random() < 0.5 else -1)
    ys, yh = 0.16, app.hip
    stride, knee = rng.uniform(0.0, 0.35), rng.uniform(0.0, 0.5)
    # Arms: a shared forward/backward swing plus a small outward spread of each arm.
    common = rng.uniform(-0.25, 0.25)
    swing = (common - rng.uniform(0.0, 0.15), common + rng.uniform(0.0, 0.15))
    elbow = (rng.uniform(0.0, 0.6), rng.uniform(0.0, 0.6))
    _draw_bag(pen, app, ys, yh, behind=True)
    _draw_legs(pen, app, stride, knee)
    _draw_torso(pen, app, ys, yh)
    if app.emblem is not None:
        _draw_emblem(pen, app, ys, yh, tilt=math.radians(rng.uniform(-15, 15)))
    _draw_bag(pen, app, ys, yh, behind=False)
    _draw_arms(pen, app, ys, swing, elbow)
    _draw_head(pen, app)
    return layer.resize((w, h), Image.Resampling.BOX)


def _indoor(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Camera 1: a plain wall with a door or window panel above a tiled floor seen in perspective."""
    horizon = int(h * rng.uniform(0.5, 0.72))
    wall = WALLS[rng.integers(len(WALLS))] + rng.normal(0, 8, 3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = wall * (1 - 0.15 * np.linspace(0, 1, h, dtype=np.float32))[:, None, None]  # light from above
    x0 = int(rng.integers(-w // 4, w))
    panel = np.clip(wall * rng.uniform(0.6, 1.25), 0, 255)
    img[int(h * rng.uniform(0.05, 0.2)):horizon - 2, max(0, x0):max(0, x0 + w // 3)] = panel
    yy, xx = np.mgrid[horizon:h, 0:w].astype(np.float32)
    depth = yy - horizon + 1.5
    tile = rng.uniform(1.5, 3.0)
    vx = rng.uniform(0, w)
    checks = ((np.floor((xx - vx) / depth / tile * 4) + np.floor(40 / depth / tile)) % 2)[..., None]
    floor_a = FLOORS[rng.integers(len(FLOORS))] + rng.normal(0, 8, 3)
    fade = np.clip((yy - horizon) / max(h - horizon, 1), 0.2, 1)[..., None]  # far tiles blur together
    img[horizon:] = floor_a * (1 - 0.18 * checks * fade)
    img[horizon - 2:horizon] = wall * 0.5  # skirting board
    return img


def _outdoor(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Camera 2: sky, building facades with windows and foliage, over a textured pavement."""
    horizon = int(h * rng.uniform(0.45, 0.68))
    img = np.empty((h, w, 3), np.float32)
    img[:] = np.array((150, 185, 225), np.float32) + rng.normal(0, 10, 3)
    x = int(rng.integers(-w // 2, 0))
    while x < w:  # a row of facades of random widths and heights
        bw, top = int(rng.integers(w // 3, w)), int(h * rng.uniform(0.0, 0.3))
        colour = FACADES[rng.integers(len(FACADES))] + rng.normal(0, 10, 3)
        img[top:horizon, max(0, x):x + bw] = colour
        for wy in range(top + 4, horizon - 8, 12):
            for wx in range(x + 3, x + bw - 6, 10):
                img[wy:wy + 6, max(0, wx):max(0, wx + 5)] = colour * 0.45
        x += bw
    if rng.random() < 0.6:  # a hedge along the street
        band = int(h * rng.uniform(0.05, 0.15))
        fol = FOLIAGE[rng.integers(len(FOLIAGE))]
        img[horizon - band:horizon] = texture(rng, w, band, fol, fol * 0.55, kind="noise")
    pav = PAVEMENTS[rng.integers(len(PAVEMENTS))] + rng.normal(0, 8, 3)
    img[horizon:] = texture(rng, w, h - horizon, pav, pav * 0.75, kind=str(rng.choice(["noise", "checks"])))
    return img


def _shadow(arr: np.ndarray, cx: float, feet: float, width: float) -> np.ndarray:
    h, w = arr.shape[:2]
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse([cx - width, feet - width * 0.18, cx + width, feet + width * 0.18], fill=90)
    m = np.asarray(mask.filter(ImageFilter.GaussianBlur(1.5)), np.float32)[..., None] / 255.0
    return arr * (1 - m)


def render(seed: int, identity: int, camera: int, key: tuple[int, ...], size: tuple[int, int],
           look: ClassificationLook | None = None, emblems: tuple[str, ...] = ()) -> Image.Image:
    """One picture of `identity` seen by `camera`; `key` makes the scene, pose and lighting unique. In the
    classification look both cameras see that look's backgrounds; their lighting still differs."""
    w, h = size
    rng = item_rng(seed, DOMAIN, *key)
    if look is not None:
        bg = look.background(rng, w, h, look.palette[rng.integers(len(look.palette))])
    else:
        bg = _indoor(rng, w, h) if camera == 1 else _outdoor(rng, w, h)
    height = h * rng.uniform(0.74, 0.92)
    top = rng.uniform(0.02 * h, h - height - 0.01 * h)
    cx = w / 2 + rng.uniform(-0.12, 0.12) * w
    bg = _shadow(bg, cx, top + 0.985 * height, 0.2 * height)
    layer = draw_person(appearance(seed, identity, look, emblems), rng, size, cx, top, height)
    arr = composite(bg, np.asarray(layer.convert("RGB"), np.float32), layer.getchannel("A"))
    cast, (lo, hi) = LIGHTING[camera]
    gains = np.array(cast, np.float32) * rng.uniform(lo, hi) + rng.normal(0, 0.03, 3)
    arr = arr * gains + rng.normal(0, 3.0, arr.shape)
    return to_image(arr, blur=rng.uniform(0.2, 0.6))


def _write(job: tuple) -> None:
    path, seed, identity, camera, key, size, quality, look, emblems = job
    save_jpeg(render(seed, identity, camera, key, size, look, emblems), Path(path), quality)


def _plan(cfg: dict, seed: int) -> list[tuple[str, int, int, tuple[int, ...]]]:
    """Every image as (path relative to the root, identity number, camera, rng key)."""
    n_query, n_distract = cfg["query_ids"], cfg["distractors"]
    plan = []
    for i in range(1, n_query + 1):
        ident = f"{i:07d}"
        plan.append((f"{TEST_DIR}/query/{ident}/{ident}_c{QUERY_CAMERA}_1.jpg", i, QUERY_CAMERA, (_QUERY, i)))
        plan.append((f"{TEST_DIR}/gallery/{ident}/{ident}_c{GALLERY_CAMERA}_1.jpg", i, GALLERY_CAMERA, (_GALLERY, i)))
    for n in range(1, n_distract + 1):  # each distractor is a person of its own, never a query identity
        rel = f"{TEST_DIR}/gallery/{DISTRACTOR_ID}/{DISTRACTOR_ID}_c{GALLERY_CAMERA}_{n}.jpg"
        plan.append((rel, n_query + n, GALLERY_CAMERA, (_DISTRACTOR, n)))
    first_train = n_query + n_distract + 1
    per_bag, k = cfg["images_per_bag"], cfg["identities_per_bag"]
    for b in range(1, cfg["train_bags"] + 1):
        rng = item_rng(seed, DOMAIN, _BAG, b)
        # Every identity of the bag appears at least once (when the bag is large enough), in random order.
        members = rng.permutation(np.arange(per_bag) % k)
        cameras = rng.integers(1, 3, per_bag)
        bag = f"{b:010d}"
        for n in range(per_bag):
            identity = first_train + (b - 1) * k + int(members[n])
            plan.append((f"{TRAIN_DIR}/{bag}/{bag}_{n + 1}.jpg", identity, int(cameras[n]), (_TRAIN, b, n)))
    return plan


def generate_sysu(out_dir: Path, cfg: dict, seed: int, look: ClassificationLook | None = None,
                  emblems: tuple[str, ...] = ()) -> dict:
    """Write the embedded SYSU-30k-layout dataset under out_dir (atomically) and return its counts. `look`:
    the classification look (None: native); `emblems`: the shapes identities wear on their shirts (the
    classification classes in that look; none: no print)."""
    size, quality = (int(cfg["width"]), int(cfg["height"])), int(cfg["jpeg_quality"])
    plan = _plan(cfg, seed)
    with AtomicDir(Path(out_dir)) as tmp:
        run_jobs(_write, [(str(tmp / rel), seed, ident, cam, key, size, quality, look, tuple(emblems))
                          for rel, ident, cam, key in plan],
                 desc="sysu30k")
        for split, folder in SPLIT_FOLDERS.items():
            write_lines(tmp / "meta" / f"{split}.txt", sorted(rel for rel, *_ in plan if rel.startswith(folder + "/")))
    return {
        "query": cfg["query_ids"], "gallery": cfg["query_ids"] + cfg["distractors"],
        "distractors": cfg["distractors"], "train": cfg["train_bags"] * cfg["images_per_bag"],
        "train_bags": cfg["train_bags"], "train_identities": cfg["train_bags"] * cfg["identities_per_bag"],
        "images": len(plan),
    }
