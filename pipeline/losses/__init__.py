"""Self-supervised losses, one per file, and a name -> class registry.

``build_loss("truncated_triplet", k=2, k_end=10)`` builds a loss from its config name; the names match
``loss.name`` in params.yaml. Each loss takes only its own hyperparameters:

- truncated_triplet: k, k_end, variant, gamma, margin
- byol: none
- infonce: temperature
- nt_xent: temperature (SimCLR)
- negative_cosine: none (SimSiam)
- coding_rate: eps, invariance_weight (EMP-SSL)
- swav: temperature, sinkhorn_eps, sinkhorn_iterations (method proto)
"""

from __future__ import annotations

import inspect

from torch import nn

from pipeline.losses.byol import BYOLLoss
from pipeline.losses.coding_rate import CodingRateLoss
from pipeline.losses.infonce import InfoNCELoss
from pipeline.losses.negative_cosine import NegativeCosineLoss
from pipeline.losses.nt_xent import NTXentLoss
from pipeline.losses.swav import SwAVLoss
from pipeline.losses.truncated_triplet import (VARIANTS, TruncatedTripletLoss, false_negative_rates,
                                               hardest_false_negative_rate)

LOSSES: dict[str, type[nn.Module]] = {
    "truncated_triplet": TruncatedTripletLoss,
    "byol": BYOLLoss,
    "infonce": InfoNCELoss,
    "nt_xent": NTXentLoss,
    "negative_cosine": NegativeCosineLoss,
    "coding_rate": CodingRateLoss,
    "swav": SwAVLoss,
}


def loss_hyperparameters(name: str) -> tuple[str, ...]:
    """Names of the keyword arguments that loss ``name`` accepts (e.g. to pick them out of a config)."""
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    return tuple(n for n, p in params.items() if n != "self"
                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def build_loss(name: str, **kwargs) -> nn.Module:
    """Instantiate the loss registered under ``name`` with ``kwargs``.

    Raises:
        ValueError: for an unknown name (naming the allowed ones), for a keyword the loss does not take
            (naming the ones it does), or for a bad hyperparameter value (raised by the loss itself).
    """
    cls = _lookup(name)
    accepted = loss_hyperparameters(name)
    unexpected = sorted(set(kwargs) - set(accepted))
    if unexpected:
        raise ValueError(f"loss {name!r} does not take {', '.join(unexpected)}; it accepts "
                         f"{', '.join(accepted) if accepted else 'no hyperparameters'}")
    return cls(**kwargs)


def _lookup(name: str) -> type[nn.Module]:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of: {', '.join(LOSSES)}")
    return LOSSES[name]


__all__ = ["TruncatedTripletLoss", "BYOLLoss", "InfoNCELoss", "NTXentLoss", "NegativeCosineLoss", "CodingRateLoss",
           "SwAVLoss", "LOSSES", "VARIANTS", "build_loss",
           "loss_hyperparameters", "false_negative_rates",
           "hardest_false_negative_rate"]
