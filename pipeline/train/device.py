"""Can `train.device` be honoured on this machine? One check, one message, for check_params and every stage
that picks a device (pipeline/train/loop.py:pick_device): `cuda` without CUDA stops with one line naming the
key, not with a traceback after the data were loaded.
"""
from __future__ import annotations

from ..config import ParamsError


def device_problem(kind: str, key: str = "train.device") -> str | None:
    """Why `key = kind` cannot run here, or None. Imports torch only when CUDA is asked for."""
    if kind != "cuda":
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return f"{key} = 'cuda': CUDA is not available on this machine; expected 'auto' or 'cpu' here"


def check_device(kind: str, key: str = "train.device", source: str = "params.yaml") -> None:
    """Raise ParamsError (one line: the stages print it as their error) when `key = kind` cannot run here."""
    problem = device_problem(kind, key)
    if problem is not None:
        raise ParamsError(f"{source}: {problem}")
