"""NT-Xent, SimCLR's loss (Chen et al., 2020), over the 2B embeddings of a batch's two views.

With u = the L2-normalised [z1; z2] (2B rows) and s_ab = <u_a, u_b> / temperature, anchor a's positive is
the other view of its image and its negatives are the other 2B - 2 embeddings of both views:

    l(a) = -log( exp(s_a,pos(a)) / sum_{b != a} exp(s_ab) ),   loss = mean over the 2B anchors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_pair, check_temperature


class NTXentLoss(nn.Module):
    """SimCLR's normalised temperature-scaled cross-entropy (both directions in one call).

    Args:
        temperature: softmax temperature (> 0); SimCLR used 0.1-0.5, default 0.2.

    Examples:
        >>> loss = NTXentLoss(0.2)(projection_view1, projection_view2)   # neither detached
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature, type(self).__name__)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """z1, z2: [B, D] embeddings of view 1 and view 2 (row i of each is image i; any norm).

        Raises:
            ValueError: on mismatched / non-2-D shapes (naming both), or B < 2 (no negatives).
        """
        name = type(self).__name__
        batch, _ = check_pair(z1, z2, name)
        if batch < 2:
            raise ValueError(f"{name}: batch B = {batch} gives no negatives; NT-Xent needs a batch of at least 2")
        u = F.normalize(torch.cat([z1, z2]), dim=1)
        logits = (u @ u.T) / self.temperature
        logits.fill_diagonal_(float("-inf"))  # an embedding is neither its own positive nor a negative
        index = torch.arange(batch, device=u.device)
        positives = torch.cat([index + batch, index])
        return F.cross_entropy(logits, positives)
