"""SimSiam (Chen and He, 2021): projector + predictor, a stop-gradient on the other view, no target network.

Heads as the paper describes them, at the model group's widths: a 3-layer projector (Linear -> BN -> ReLU,
twice, then Linear -> BN; model.projector_hidden wide, model.projector_out out) and a 2-layer bottleneck
predictor whose hidden layer is a quarter of its input (the paper's 2048 -> 512 -> 2048). The loss is
D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 with D the negative cosine similarity (docs/methods.md).
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import build_backbone
from .base import Method


def projector(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim, bias=False), nn.BatchNorm1d(out_dim, affine=False))


def predictor(dim: int) -> nn.Sequential:
    hidden = max(dim // 4, 1)
    return nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, dim))


class SimSiam(Method):
    name, loss = "simsiam", "negative_cosine"

    def __init__(self, arch: str, stem: str, projector_hidden: int, projector_out: int):
        super().__init__()
        self.backbone, self.feat_dim = build_backbone(arch, stem)
        self.projector = projector(self.feat_dim, projector_hidden, projector_out)
        self.predictor = predictor(projector_out)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, loss_fn, local=()):
        if local:
            raise ValueError("simsiam takes two views; multi-crop's local views (train.local_views) are for the "
                             "siamese methods")
        z1, z2 = self.projector(self.backbone(view1)), self.projector(self.backbone(view2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        l12, l21 = loss_fn(p1, z2.detach()), loss_fn(p2, z1.detach())
        return 0.5 * (l12 + l21), {"view1->view2": l12.detach(), "view2->view1": l21.detach()}, (p1.detach(), z2.detach())
