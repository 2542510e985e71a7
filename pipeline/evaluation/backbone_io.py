"""Backbones for the evaluation stages: the exported pretrained one, and its random-init twin.

Every downstream stage compares the pretrained backbone with a randomly initialised one of the same
architecture; both come from here so that "random init" means the same weights everywhere (the seed the
pretrain stage started from).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models import build_backbone
from .errors import BackboneLoadError  # noqa: F401 - raised here, re-exported for callers


def random_backbone(arch: str, stem: str, seed: int) -> tuple[nn.Module, int]:
    """The backbone the pretrain stage starts from (same seed), without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_backbone(arch, stem)


def load_backbone(path: str | Path, arch: str, stem: str) -> tuple[nn.Module, int]:
    """Load an exported torchvision state_dict (fc.* absent) into a fresh backbone; (model, feature dim).

    Only classifier keys (`fc.*`) may be missing; anything else missing or unexpected (another
    architecture, another stem, a full training checkpoint) raises BackboneLoadError naming the keys.
    """
    path = Path(path)
    if not path.is_file():
        raise BackboneLoadError(f"{path}: backbone file not found (run the pretrain stage first)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise BackboneLoadError(f"{path}: not a readable torch state_dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneLoadError(f"{path}: expected a flat state_dict of tensors (a torchvision backbone export)")
    model, dim = build_backbone(arch, stem)
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected and not k.startswith("fc."))
    wrong_shape = sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        raise BackboneLoadError(
            f"{path} does not fit model.arch={arch!r}, model.stem={stem!r}: " + "; ".join(
                f"{what} {len(keys)} key(s) ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"
                for what, keys in (("missing", missing), ("unexpected", unexpected),
                                   ("wrong shape for", wrong_shape)) if keys))
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    return model, dim
