"""Optimizer factory: LARS / SGD / AdamW with BatchNorm parameters and biases kept out of weight decay."""
from __future__ import annotations

import torch

from .lars import LARS, split_decay_groups


def build_optimizer(name: str, named_params, lr: float, weight_decay: float, momentum: float):
    groups = split_decay_groups(named_params)
    groups[0]["weight_decay"] = weight_decay
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    plain = [{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups]
    if name == "sgd":
        return torch.optim.SGD(plain, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(plain, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"train.optimizer = {name!r}: expected lars, sgd or adamw")


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
