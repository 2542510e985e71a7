"""`proto`: a prototype method, SwAV (Caron et al., NeurIPS 2020): swapped prediction of Sinkhorn codes.

The seed paper (Mo et al., "Siamese Prototypical Contrastive Learning") matches features to prototypes
within a prototype and separates them across prototypes, so that semantically similar images are not pushed
apart as false negatives. SwAV is the closest published method with a public reference and an exact formula:
the two views of an image must predict each other's prototype assignment, and the equipartition constraint
of the assignments keeps the prototypes apart; no image is ever a negative. docs/methods.md says what differs.

Model: backbone, the model group's projector MLP, L2-normalised embeddings, and loss.prototypes unit-norm
prototype vectors (a bias-free Linear whose rows are renormalised before every forward pass, as SwAV
renormalises after every step). No predictor, no target network. Multi-crop's small views predict the large
views' codes (train.local_views).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import build_backbone
from ..models.heads import mlp
from .base import Method


class Proto(Method):
    name, loss = "proto", "swav"

    def __init__(self, arch: str, stem: str, projector_hidden: int, projector_out: int, prototypes: int):
        super().__init__()
        self.backbone, self.feat_dim = build_backbone(arch, stem)
        self.projector = mlp(self.feat_dim, projector_hidden, projector_out)
        self.prototypes = nn.Linear(projector_out, prototypes, bias=False)
        self.normalize_prototypes()

    @classmethod
    def from_params(cls, params) -> "Proto":
        m = params.model
        return cls(m.arch, m.stem, m.projector_hidden, m.projector_out, params.loss.prototypes)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.backbone(x)), dim=1)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, loss_fn, local=()):
        self.normalize_prototypes()
        z1, z2 = self.embed(torch.cat([view1, view2])).chunk(2)
        small = self.embed(torch.cat(local)).chunk(len(local)) if local else ()
        loss = loss_fn([self.prototypes(z1), self.prototypes(z2)], [self.prototypes(z) for z in small])
        return loss, {"swapped_prediction": loss.detach()}, (z1.detach(), z2.detach())
