"""Input checks shared by the losses: clear ValueErrors that name the offending shapes and values."""

from __future__ import annotations

import torch


def check_pair(online: torch.Tensor, target: torch.Tensor, loss_name: str) -> tuple[int, int]:
    """Check that ``online`` and ``target`` are both [B, D] with the same shape and B >= 1; return (B, D)."""
    if online.dim() != 2 or target.dim() != 2:
        raise ValueError(
            f"{loss_name}: online and target must be 2-D [batch, dim] tensors, got online shape "
            f"{tuple(online.shape)} and target shape {tuple(target.shape)}")
    if online.shape != target.shape:
        raise ValueError(
            f"{loss_name}: online and target must have the same shape, got online shape "
            f"{tuple(online.shape)} and target shape {tuple(target.shape)}")
    batch, dim = online.shape
    if batch < 1 or dim < 1:
        raise ValueError(f"{loss_name}: empty input, online and target have shape {tuple(online.shape)}")
    return batch, dim


def check_temperature(value, loss_name: str) -> float:
    """A softmax temperature: a number > 0."""
    if not value > 0:
        raise ValueError(f"{loss_name}: temperature must be > 0, got {value}")
    return float(value)


def check_positive_int(value, name: str, loss_name: str, minimum: int = 1) -> int:
    """A hyperparameter that must be an integer >= ``minimum`` (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            as_int = None
        if as_int is None or isinstance(value, bool) or as_int != value:
            raise ValueError(f"{loss_name}: {name} must be an integer, got {value!r}")
        value = as_int
    if value < minimum:
        raise ValueError(f"{loss_name}: {name} must be >= {minimum}, got {value}")
    return value
