"""One image file -> what a .beton stores for it, with the resize and JPEG settings of ffcv's RGBImageField.

Runs in worker processes, so it imports neither torch nor ffcv (cheap to spawn). Every decision is a
pure function of the file and the settings, including `proportion` mode's "compress this one?", which
ffcv draws from the unseeded global numpy RNG; here it is a hash of the image's key (its manifest path).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..data.probe import load_rgb

MODE_JPG, MODE_RAW = 0, 1  # ffcv.fields.rgb_image.IMAGE_MODES


@dataclass(frozen=True)
class EncodeSettings:
    """The convert parameters that change the bytes of a .beton (num_workers does not)."""

    max_resolution: int
    write_mode: str  # jpg | raw | proportion
    jpeg_quality: int
    compress_probability: float

    def __post_init__(self):
        if self.write_mode not in ("jpg", "raw", "proportion"):
            raise ValueError(f"convert.write_mode = {self.write_mode!r}: expected jpg, raw or proportion")

    @classmethod
    def from_params(cls, convert) -> "EncodeSettings":
        return cls(convert.max_resolution, convert.write_mode, convert.jpeg_quality, convert.compress_probability)

    def as_dict(self) -> dict:
        return asdict(self)


def resize_max_side(image: np.ndarray, max_resolution: int) -> np.ndarray:
    """Downscale so the longest side is at most max_resolution (ffcv's `resizer` semantics, INTER_AREA)."""
    h, w = image.shape[:2]
    ratio = max_resolution / max(h, w)
    if ratio >= 1:
        return image
    new_w, new_h = max(1, int(ratio * w)), max(1, int(ratio * h))
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)


def compress_this(key: str, probability: float) -> bool:
    """A stable coin flip per image: the same key always gets the same answer, in any process or order."""
    u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") / 2.0**64
    return u < probability


def encode_image(job: tuple[str, str, EncodeSettings]) -> tuple[int, int, int, bytes]:
    """(mode, height, width, payload) for one image; job = (file path, key, settings)."""
    path, key, s = job
    try:
        image = np.asarray(load_rgb(Path(path)), dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 - name the file whatever the decoder raised
        raise ValueError(f"{path}: cannot be decoded as an image ({type(e).__name__}: {e})") from None
    image = np.ascontiguousarray(resize_max_side(image, s.max_resolution))
    h, w = image.shape[:2]
    jpg = s.write_mode == "jpg" or (s.write_mode == "proportion" and compress_this(key, s.compress_probability))
    if not jpg:
        return MODE_RAW, h, w, image.tobytes()
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [int(cv2.IMWRITE_JPEG_QUALITY),
                                                                          int(s.jpeg_quality)])
    if not ok:
        raise ValueError(f"{path}: JPEG encoding failed")
    return MODE_JPG, h, w, buf.tobytes()


def init_worker() -> None:
    # One OpenCV thread per worker process: the pool already uses every core.
    cv2.setNumThreads(1)
