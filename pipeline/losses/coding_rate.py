"""EMP-SSL's loss (Tong, Chen, Ma and LeCun, 2023): total coding rate plus patch invariance, over n patches.

With z_i the L2-normalised [B, D] embeddings of patch i (i = 1..n, row b of each is image b) and
zbar = (1/n) sum_i z_i the image's mean embedding:

    R(Z)  = 1/2 logdet(I_D + D / (B eps) Z^T Z)                  the total coding rate of a [B, D] batch
    loss  = -(1/n) sum_i R(z_i)  -  lambda (1/n) sum_i mean_b cos(z_i[b], zbar[b])

eps is the formula's distortion (the authors' --eps 0.2, which their code uses as written, i.e. as eps and
not eps^2) and lambda the invariance weight (their --patch_sim 200). The coding rate spreads each patch's
embeddings over the D dimensions (no collapse); the invariance term pulls an image's patches together.
docs/methods.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def total_coding_rate(z: torch.Tensor, eps: float) -> torch.Tensor:
    """R(Z) = 1/2 logdet(I + D / (B eps) Z^T Z) of a [B, D] batch (float32 or wider)."""
    batch, dim = z.shape
    gram = z.T @ z  # [D, D]: the logdet of I + c Z^T Z equals that of I + c Z Z^T; D x D matches the authors
    eye = torch.eye(dim, dtype=z.dtype, device=z.device)
    return 0.5 * torch.logdet(eye + (dim / (batch * eps)) * gram)


class CodingRateLoss(nn.Module):
    """Total coding rate + invariance over an image's n patches (see the module docstring).

    Args:
        eps: distortion of the coding rate (> 0), the authors' 0.2.
        invariance_weight: lambda (>= 0), the authors' 200.

    Examples:
        >>> loss, terms = CodingRateLoss()(torch.stack(patch_embeddings), return_terms=True)  # [n, B, D]
    """

    def __init__(self, eps: float = 0.2, invariance_weight: float = 200.0) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"CodingRateLoss: eps must be > 0, got {eps}")
        if not invariance_weight >= 0:
            raise ValueError(f"CodingRateLoss: invariance_weight must be >= 0, got {invariance_weight}")
        self.eps, self.invariance_weight = float(eps), float(invariance_weight)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, invariance_weight={self.invariance_weight}"

    def forward(self, z: torch.Tensor, return_terms: bool = False):
        """z: [n, B, D] embeddings of n >= 2 patches of B >= 2 images (any norm: normalised here).

        Returns the loss, and with return_terms (loss, {"coding_rate": mean R, "invariance": mean cosine}),
        both detached.
        """
        if z.dim() != 3 or z.shape[0] < 2 or z.shape[1] < 2:
            raise ValueError(f"CodingRateLoss: expected [patches >= 2, batch >= 2, dim] embeddings, got shape "
                             f"{tuple(z.shape)}")
        # logdet in bf16/fp16 is too coarse (and unsupported on CPU): the loss runs in float32 at least.
        with torch.autocast(z.device.type, enabled=False):
            z = F.normalize(z.float() if z.element_size() < 4 else z, dim=-1)
            rate = torch.stack([total_coding_rate(patch, self.eps) for patch in z]).mean()
            invariance = F.cosine_similarity(z, z.mean(0, keepdim=True), dim=-1).mean()
            loss = -rate - self.invariance_weight * invariance
        if return_terms:
            return loss, {"coding_rate": rate.detach(), "invariance": invariance.detach()}
        return loss
