"""Import ffcv without its 9-second numba compile (call `import_ffcv()` before any `from ffcv ...`).

ffcv 1.0.2's `fields/rgb_image.py` builds its `IMAGE_MODES` table ({'jpg': 0, 'raw': 1}) as a numba typed
Dict at import time: the two inserts compile numba's typed-dict code, about 9 s of every process that
imports ffcv on a 2-core machine (each loader stage, convert, every test worker). ffcv reads that table only
from Python (in `generate_code` and the writer, never inside compiled code), so a plain dict serves it
equally; the only other ffcv module that imports `numba.typed.Dict` (memory_managers/base.py) never uses it.
The swap lasts only while ffcv's own modules execute: torch, numba and cv2 are imported before it.
"""
from __future__ import annotations

import sys


def import_ffcv() -> None:
    """Import ffcv (idempotent) with IMAGE_MODES as a plain dict."""
    if "ffcv" in sys.modules:
        return
    import cv2  # noqa: F401 - imported outside the swap window, as are torch and numba
    import numba.typed
    import torch  # noqa: F401

    original = numba.typed.Dict
    numba.typed.Dict = dict
    try:
        import ffcv  # noqa: F401 - its package import loads fields.rgb_image
        import ffcv.fields.rgb_image  # noqa: F401
    finally:
        numba.typed.Dict = original
