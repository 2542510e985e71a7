"""SimCLR (Chen et al., 2020): one network, a projection head, NT-Xent over the two views of the batch.

No predictor and no target network. Both views go through the network as one batch of 2B images, so batch
norm sees the two views together, as in the authors' implementation. The projector is the model group's
MLP (Linear -> BN -> ReLU -> Linear, model.projector_hidden -> model.projector_out); its output is the
embedding the loss compares (docs/methods.md).
"""
from __future__ import annotations

import torch

from ..models import build_backbone
from ..models.heads import mlp
from .base import Method


class SimCLR(Method):
    name, loss = "simclr", "nt_xent"

    def __init__(self, arch: str, stem: str, projector_hidden: int, projector_out: int):
        super().__init__()
        self.backbone, self.feat_dim = build_backbone(arch, stem)
        self.projector = mlp(self.feat_dim, projector_hidden, projector_out)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, loss_fn, local=()):
        if local:
            raise ValueError("simclr takes two views; multi-crop's local views (train.local_views) are for the "
                             "siamese methods")
        z1, z2 = self.projector(self.backbone(torch.cat([view1, view2]))).chunk(2)
        loss = loss_fn(z1, z2)
        return loss, {"nt_xent": loss.detach()}, (z1.detach(), z2.detach())
