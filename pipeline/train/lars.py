"""LARS (You et al. 2017) as used by BYOL and the truncated-triplet code.

SGD with momentum whose per-tensor step is scaled by a trust ratio eta * ||w|| / (||g|| + wd * ||w||).
Parameter groups with `lars_exclude=True` (BatchNorm parameters and all biases) get neither the
trust ratio nor weight decay, as in the official configuration.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer


class LARS(Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6,
                 trust_coefficient: float = 1e-3, eps: float = 1e-8):
        if lr < 0:
            raise ValueError(f"LARS lr = {lr}: expected >= 0")
        if not 0 <= momentum < 1:
            raise ValueError(f"LARS momentum = {momentum}: expected 0 <= momentum < 1")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, eps=eps, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"]:
                        g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.norm(p), torch.norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["trust_coefficient"] * w_norm / (g_norm + group["eps"]),
                                        torch.ones_like(w_norm))
                    g = g.mul(trust)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.clone(g).detach()
                else:
                    buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def split_decay_groups(named_params) -> list[dict]:
    """Two groups: regular weights, and biases + normalisation parameters (1-d tensors) excluded."""
    regular, excluded = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        (excluded if p.ndim <= 1 or name.endswith(".bias") else regular).append(p)
    return [{"params": regular, "lars_exclude": False},
            {"params": excluded, "lars_exclude": True, "weight_decay": 0.0}]
