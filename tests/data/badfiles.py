"""Bad image files of every kind the validation stage must report (shared by data and stage tests)."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def good_jpeg_bytes(size=(32, 32), mode="RGB", colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else colour[0] if mode == "L" else colour + (0,)).save(
        buf, format="JPEG", quality=90)
    return buf.getvalue()


def corrupt_jpeg_bytes() -> bytes:
    """A JPEG whose header segments are overwritten (the start marker survives, the rest is noise)."""
    data = bytearray(good_jpeg_bytes())
    data[2:200] = bytes((i * 37) % 256 for i in range(198))
    return bytes(data)


def truncated_jpeg_bytes() -> bytes:
    data = good_jpeg_bytes((64, 64))
    return data[: len(data) // 2]


BAD_KINDS = {
    "corrupt": corrupt_jpeg_bytes,
    "truncated": truncated_jpeg_bytes,
    "zero_byte": lambda: b"",
    "not_an_image": lambda: b"this is a text file, not a JPEG\n" * 10,
}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def rgba_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (32, 32), (1, 2, 3, 4)).save(path, format="PNG")
    return path
