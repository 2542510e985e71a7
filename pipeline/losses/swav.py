"""SwAV's swapped prediction (Caron et al., NeurIPS 2020), the loss of method `proto`.

Every view's embedding is scored against K prototypes (unit vectors): s_v = <z_v, c_k>, [B, K]. The codes of
a large view are soft assignments of the batch to the prototypes, Q_g = Sinkhorn-Knopp(exp(s_g / eps)):
`iterations` alternating normalisations that make every prototype receive B / K of the batch's mass and every
image a mass of one (equipartition, which prevents the collapse onto one prototype). Each other view predicts
them:

    loss = 1 / (G (V - 1)) sum_{g < G} sum_{v != g} mean_b [ -sum_k Q_g[b, k] log softmax(s_v[b] / t)_k ]

with G the large views (codes are computed on them only, as in SwAV), V all views (multi-crop's small ones
included) and t the temperature. Codes carry no gradient. Under DDP the Sinkhorn sums run over every
process's batch (an all-reduce), as in the authors' code. docs/methods.md.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_positive_int, check_temperature


def _all_reduce(t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    if _world() > 1:
        dist.all_reduce(t, op=op)
    return t


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, eps: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """[B, K] scores -> [B, K] codes: rows sum to 1, and each prototype receives B / K of the (global) batch."""
    # Shifting every score by one constant (the global maximum) changes nothing after the normalisations and
    # keeps exp() finite whatever eps.
    scores = scores.float() if scores.element_size() < 4 else scores
    q = torch.exp((scores - _all_reduce(scores.max().reshape(1), dist.ReduceOp.MAX)) / eps).T  # [K, B]
    prototypes, batch = q.shape[0], q.shape[1] * _world()
    q /= _all_reduce(q.sum().reshape(1))
    for _ in range(iterations):
        q /= _all_reduce(q.sum(dim=1, keepdim=True))  # every prototype: 1 / K of the mass
        q /= prototypes
        q /= q.sum(dim=0, keepdim=True)              # every image: 1 / B of it (local columns)
        q /= batch
    return (q * batch).T


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class SwAVLoss(nn.Module):
    """Swapped prediction of Sinkhorn codes (see the module docstring).

    Args:
        temperature: of the predicted distribution (> 0); SwAV's 0.1.
        sinkhorn_eps: of the codes (> 0); SwAV's 0.05.
        sinkhorn_iterations: SwAV's 3.

    Examples:
        >>> loss = SwAVLoss()([scores_view1, scores_view2], local_scores)   # [B, K] each
    """

    def __init__(self, temperature: float = 0.1, sinkhorn_eps: float = 0.05, sinkhorn_iterations: int = 3) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature, type(self).__name__)
        if not sinkhorn_eps > 0:
            raise ValueError(f"SwAVLoss: sinkhorn_eps must be > 0, got {sinkhorn_eps}")
        self.sinkhorn_eps = float(sinkhorn_eps)
        self.sinkhorn_iterations = check_positive_int(sinkhorn_iterations, "sinkhorn_iterations", type(self).__name__)

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, sinkhorn_eps={self.sinkhorn_eps}, "
                f"sinkhorn_iterations={self.sinkhorn_iterations}")

    def forward(self, large: list[torch.Tensor], small: list[torch.Tensor] = ()) -> torch.Tensor:
        """large: G >= 1 [B, K] score tensors of the views that get codes; small: the other views' scores."""
        views = [*large, *small]
        if not large or len(views) < 2:
            raise ValueError(f"SwAVLoss: expected at least one large view and two views in all, got {len(large)} "
                             f"large and {len(views) - len(large)} small")
        shapes = {tuple(v.shape) for v in views}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"SwAVLoss: expected [B, K] scores of one shape for every view, got {sorted(shapes)}")
        with torch.autocast(views[0].device.type, enabled=False):
            log_p = [F.log_softmax((v.float() if v.element_size() < 4 else v) / self.temperature, dim=1)
                     for v in views]
            total = 0.0
            for g, scores in enumerate(large):
                codes = sinkhorn(scores.detach(), self.sinkhorn_eps, self.sinkhorn_iterations)
                total = total + sum(-(codes * log_p[v]).sum(dim=1).mean() for v in range(len(views)) if v != g)
            return total / (len(large) * (len(views) - 1))
