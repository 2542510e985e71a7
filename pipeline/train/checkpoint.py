"""Atomic, resumable checkpoints read with `weights_only=True`.

A checkpoint holds plain tensors and Python scalars only (model and optimizer state, step, epoch, the
RNG states), so `torch.load(..., weights_only=True)` can read it: no pickled code runs on load.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from ..io_safety import atomic_write


def atomic_save(obj, path: Path) -> None:
    """Write to `<path>.tmp`, fsync, then rename: a crash never leaves a half-written checkpoint.

    Any failure removes the `.tmp`; a full disk raises DiskFullError naming `path`, its estimated size
    and the free space.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, needed=tensor_bytes(obj)) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


def tensor_bytes(obj) -> int:
    """The bytes of tensor data in a (nested) checkpoint object: about the size torch.save writes."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": repr(random.getstate()),
            "numpy": {"key": np_state[0], "state": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}


def set_rng_state(state: dict) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    py = ast.literal_eval(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["key"], n["state"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint safely; a truncated or foreign file gives an error naming it."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e}); "
                         "delete it to start from scratch") from None


def load_run_checkpoint(path: Path, fingerprint: str, map_location="cpu") -> dict | None:
    """The checkpoint at `path` if it was written by the run with this fingerprint (same parameters, data and
    code), else None: no file, or another configuration's (logged), which the caller then trains over."""
    if not Path(path).exists():
        return None
    ckpt = load_checkpoint(path, map_location=map_location)
    if ckpt.get("fingerprint") != fingerprint:
        logging.getLogger("pipeline").info("%s was written by another configuration: starting from scratch", path)
        return None
    return ckpt
