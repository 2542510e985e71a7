"""The BYOL-style framework around every loss: online network with predictor, EMA target network.

The loss is applied in both directions (view 1 -> view 2 and back) and the two halves summed, as the
official code does; the target runs in train mode and only its parameters are averaged (BN buffers are
its own).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .backbone import build_backbone
from .heads import mlp


class SiameseModel(nn.Module):
    def __init__(self, arch: str, stem: str, projector_hidden: int, projector_out: int, predictor_hidden: int):
        super().__init__()
        self.backbone, self.feat_dim = build_backbone(arch, stem)
        self.projector = mlp(self.feat_dim, projector_hidden, projector_out)
        self.predictor = mlp(projector_out, predictor_hidden, projector_out)
        self.target_backbone = copy.deepcopy(self.backbone)
        self.target_projector = copy.deepcopy(self.projector)
        for p in self.target_parameters():
            p.requires_grad_(False)

    def target_parameters(self):
        yield from self.target_backbone.parameters()
        yield from self.target_projector.parameters()

    def online_parameters(self):
        for name, p in self.named_parameters():
            if not name.startswith("target_"):
                yield name, p

    def online(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> predictor output [B, projector_out]."""
        return self.predictor(self.projector(self.backbone(x)))

    @torch.no_grad()
    def target(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> target projection [B, projector_out] (no gradient)."""
        return self.target_projector(self.target_backbone(x))

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, loss_fn, local: tuple[torch.Tensor, ...] = (),
                **loss_kwargs):
        """Symmetrised loss: loss(p1, z2) + loss(p2, z1). Returns (total, {"view1->view2": .., "view2->view1": ..},
        (p1, z2)), the contract of `pipeline.methods.base.Method.forward`.

        Multi-crop: each of the `local` small views (one online pass for all of them) is also compared with
        both views' target projections (the target sees the two large views only, as in SwAV and DINO), and
        the sum over the 2 + 2m pairs is rescaled to the two-view loss's two terms.
        """
        p1, p2 = self.online(view1), self.online(view2)
        z1, z2 = self.target(view1), self.target(view2)
        l12, l21 = loss_fn(p1, z2, **loss_kwargs), loss_fn(p2, z1, **loss_kwargs)
        total = l12 + l21
        if local:
            for p in self.online(torch.cat(local)).chunk(len(local)):
                total = total + loss_fn(p, z1, **loss_kwargs) + loss_fn(p, z2, **loss_kwargs)
            total = total * (2.0 / (2 + 2 * len(local)))
        return total, {"view1->view2": l12.detach(), "view2->view1": l21.detach()}, (p1.detach(), z2)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """theta_target <- m * theta_target + (1 - m) * theta_online, parameters only."""
        online = list(self.backbone.parameters()) + list(self.projector.parameters())
        target = list(self.target_parameters())
        torch._foreach_mul_(target, momentum)
        torch._foreach_add_(target, online, alpha=1.0 - momentum)


def ema_momentum(base: float, step: int, total_steps: int) -> float:
    """m = 1 - (1 - base) * (cos(pi * step / total) + 1) / 2: from `base` up to 1 at the end."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)) + 1) / 2
