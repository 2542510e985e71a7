"""Open every image once and record what validation needs: size, mode, bytes, whether it decodes."""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ..progress import show_progress

# Modes the loaders accept; L (grayscale) and CMYK are converted to RGB when read (docs/own-data.md).
ACCEPTED_MODES = ("RGB", "L", "CMYK")


def probe_image(path: Path) -> dict:
    """{width, height, mode, bytes, decodes, error} for one file; never raises."""
    row = {"width": -1, "height": -1, "mode": "", "bytes": -1, "decodes": False, "error": ""}
    try:
        row["bytes"] = os.path.getsize(path)
    except OSError as e:
        row["error"] = f"file missing or unreadable: {e.strerror or e}"
        return row
    if row["bytes"] == 0:
        row["error"] = "zero-byte file"
        return row
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # PIL's 'truncated' / decompression-bomb warnings become failures
            with Image.open(path) as im:
                im.load()  # a full decode: catches truncated data that a header-only open misses
                row.update(width=im.width, height=im.height, mode=im.mode)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a data error to report, not a crash
        row["error"] = f"{type(e).__name__}: {e}"
        return row
    row["decodes"] = True
    return row


def probe_many(paths: list[Path], desc: str = "probing images") -> list[dict]:
    """Probe files in a small thread pool (PIL releases the GIL while decoding)."""
    disable = not show_progress()
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(tqdm(pool.map(probe_image, paths, chunksize=64), total=len(paths), desc=desc, disable=disable))


def load_rgb(path: Path) -> Image.Image:
    """Decode one image as RGB (grayscale and CMYK are converted; other modes are rejected upstream)."""
    with Image.open(path) as im:
        return im.convert("RGB")
