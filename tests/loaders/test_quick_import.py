"""ffcv imported through pipeline.ffcv_io.quick_import: its IMAGE_MODES table is a plain dict (no numba
typed-dict compile at import) and numba's Dict is left as it was for everyone else."""
from __future__ import annotations

import subprocess
import sys

from pipeline.loaders.decoders import _JPG
from pipeline.ffcv_io.encode import MODE_JPG, MODE_RAW


def test_image_modes_is_a_plain_dict_with_ffcv_values_and_numba_dict_is_restored():
    code = ("from pipeline.loaders import ffcv_common\n"
            "import numba.typed, ffcv.fields.rgb_image as rgb\n"
            "print(type(rgb.IMAGE_MODES).__name__, rgb.IMAGE_MODES['jpg'], rgb.IMAGE_MODES['raw'],\n"
            "      numba.typed.Dict is numba.typed.typeddict.Dict)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["dict", str(_JPG), str(MODE_RAW), "True"] and MODE_JPG == _JPG == 0
