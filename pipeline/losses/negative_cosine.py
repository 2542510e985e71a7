"""SimSiam's loss term (Chen and He, 2021): the negative cosine similarity D(p, z) = -<p/|p|, z/|z|>."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_pair


class NegativeCosineLoss(nn.Module):
    """Mean over the batch of -cos(online_i, target_i). No hyperparameters; the stop-gradient and the
    symmetrisation over the two views belong to the method (pass the target detached).

    Examples:
        >>> loss = 0.5 * (NegativeCosineLoss()(p1, z2.detach()) + NegativeCosineLoss()(p2, z1.detach()))
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(online, target, type(self).__name__)
        return -F.cosine_similarity(online, target, dim=1).mean()
