"""BYOL regression loss (Grill et al., 2020): mean over the batch of 2 - 2 cos(online_i, target_i)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_pair


class BYOLLoss(nn.Module):
    """Normalised mean squared error between online predictions and target projections.

    ``||p_i/|p_i| - z_i/|z_i| ||^2 = 2 - 2 cos(p_i, z_i)``, averaged over the batch. No hyperparameters.
    The symmetrisation over the two views belongs to the model.

    Examples:
        >>> loss = BYOLLoss()(prediction_view1, target_projection_view2.detach())
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            online: [B, D] online predictions (any norm; L2-normalised here).
            target: [B, D] target projections of the other view (any norm); pass it detached for an EMA
                target, the loss does not detach it itself.

        Returns:
            Scalar: mean over i of 2 - 2 cos(online_i, target_i).

        Raises:
            ValueError: if the inputs are not two 2-D tensors of the same non-empty shape.
        """
        check_pair(online, target, type(self).__name__)
        p = F.normalize(online, dim=1)
        z = F.normalize(target, dim=1)
        return (2.0 - 2.0 * (p * z).sum(dim=1)).mean()
