"""InfoNCE / NT-Xent between online predictions and target projections (one direction).

logits_ij = <p_i, z_j> / temperature with p, z L2-normalised; the loss is the cross-entropy of each row
with its diagonal entry (same image, other view) as the positive class and the other B - 1 target
projections as negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_pair, check_temperature


class InfoNCELoss(nn.Module):
    """Cross-entropy over cosine similarities / temperature, positives on the diagonal.

    Args:
        temperature: softmax temperature (> 0), default 0.2.

    Raises:
        ValueError: if temperature <= 0.

    Examples:
        >>> loss = InfoNCELoss(temperature=0.2)(prediction_view1, projection_view2)
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature, type(self).__name__)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(self, online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            online: [B, D] online outputs (any norm; L2-normalised here).
            target: [B, D] outputs for the other view (any norm). Row i is the positive of online row i;
                it is not detached here (detach it in the caller for a stop-gradient target).

        Returns:
            Scalar: mean over rows of the cross-entropy of logits [B, B] with labels arange(B).

        Raises:
            ValueError: on mismatched / non-2-D shapes (naming both), or B < 2 (no negatives).
        """
        name = type(self).__name__
        batch, _ = check_pair(online, target, name)
        if batch < 2:
            raise ValueError(f"{name}: batch B = {batch} gives {batch - 1} negatives per row; "
                             "InfoNCE needs at least 1 (a batch of at least 2)")
        p = F.normalize(online, dim=1)
        z = F.normalize(target, dim=1)
        logits = (p @ z.T) / self.temperature                          # [B, B]
        labels = torch.arange(batch, device=logits.device)
        return F.cross_entropy(logits, labels)
