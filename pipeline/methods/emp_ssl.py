"""EMP-SSL (Tong, Chen, Ma and LeCun, 2023): n fixed-size patches per image, total coding rate + invariance.

One network, no predictor, no target and no stop-gradient. The loader cuts the n patches
(`train.image_size` px, crop scale fixed at loss.patch_scale, square) and delivers them as view 1, view 2 and
n - 2 more views of the same size (`pipeline/loaders/ssl.py`); all n B patches pass through the network as one
batch, as in the authors' code. The projector is theirs at the model group's widths: Linear -> BN -> ReLU,
then the model's MLP (Linear -> BN -> ReLU -> Linear). Evaluation averages the backbone features of
loss.eval_patches patches per image (a bag of patches, `pipeline/loaders/eval.py`). docs/methods.md.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import build_backbone
from ..models.heads import mlp
from .base import Method


class EMPSSL(Method):
    name, loss = "emp_ssl", "coding_rate"

    def __init__(self, arch: str, stem: str, projector_hidden: int, projector_out: int):
        super().__init__()
        self.backbone, self.feat_dim = build_backbone(arch, stem)
        self.projector = nn.Sequential(nn.Linear(self.feat_dim, projector_hidden), nn.BatchNorm1d(projector_hidden),
                                       nn.ReLU(inplace=True), *mlp(projector_hidden, projector_hidden, projector_out))

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, loss_fn, local=()):
        patches = (view1, view2, *local)
        if len({tuple(p.shape) for p in patches}) != 1:
            raise ValueError("emp_ssl: its patches share one size, got views of shapes "
                             f"{sorted({tuple(p.shape) for p in patches})}")
        z = self.projector(self.backbone(torch.cat(patches))).unflatten(0, (len(patches), len(view1)))  # [n, B, D]
        loss, terms = loss_fn(z, return_terms=True)
        return loss, terms, (z[0].detach(), z[1].detach())
