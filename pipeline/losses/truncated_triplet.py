"""Truncated triplet loss (Wang et al., "Solving Inefficiency of Self-supervised Representation Learning",
ICCV 2021), computed as the official code does it.

For one direction (the model sums the two view orders), with p_i the L2-normalised online prediction of
view a of image i and z_j the L2-normalised target projection of view b of image j:

    d_ij    = -2 * <p_i, z_j>                    (distance = -2 cos)
    d_ap(i) = d_ii                                (positive: same image, other view)
    negatives of row i: d_ij for every j != i, ranked ascending (rank 1 = hardest = most similar)
    d_an(i) = deputy negative, by variant:
        "smoothed": mean of ranks k..k_end (official default, k=2, k_end=10: the hardest is dropped)
        "rank":     rank k
        "median":   torch.median of the B-1 negative distances (the lower median)
        "hardest":  rank 1 (batch-hard triplet)
    loss    = mean_i max(0, gamma * d_ap(i) - d_an(i) + margin)   (official gamma=2, margin=100)

The rank selection is a constant for the gradient: the full similarity matrix is computed without
autograd and only used to choose the deputy negatives (a top-k, never a full sort; kthvalue for the
median), whose similarities are then recomputed inside the graph as O(B * n_selected * D) dot products.
The selected values therefore carry the gradient, the indices do not, and no [B, B] tensor is kept for
the backward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses._checks import check_pair, check_positive_int

VARIANTS = ("smoothed", "rank", "median", "hardest")
PAPER_WINDOW = 9  # ranks 2..10 of the official default


def expected_false_negatives(pool: int, classes: int) -> float:
    """Expected same-class negatives of a query among the other pool - 1 images, each of its class with
    probability 1 / classes (the paper's Bernoulli model, balanced classes): (pool - 1) / classes."""
    check_positive_int(pool, "pool", "expected_false_negatives")
    check_positive_int(classes, "classes", "expected_false_negatives")
    return (pool - 1) / classes


def auto_ranks(pool: int, classes: int, window: int = PAPER_WINDOW) -> tuple[int, int]:
    """`loss.k: auto`: the deputy ranks (k, k_end) that step over the expected false negatives.

    With m = (pool - 1) / classes same-class negatives expected per query, the hardest ceil(m) ranks are
    where they sit: k = max(2, ceil(m) + 1) starts after them (never below the paper's 2, which drops the
    hardest), and k_end = k + window - 1 keeps the paper's nine ranks (2..10), both capped at the pool's
    pool - 1 negatives. In the paper's regime (1000 classes, m << 1) this is the default 2..10; with 10
    classes and a batch of 128 (m = 12.7) it is 14..22.
    """
    import math

    if pool < 2:
        raise ValueError(f"auto_ranks: a pool of {pool} image(s) has no negatives")
    k = max(2, math.ceil(expected_false_negatives(pool, classes)) + 1)
    k_end = min(k + window - 1, pool - 1)
    return min(k, k_end), k_end


class TruncatedTripletLoss(nn.Module):
    """Truncated triplet loss with a deputy negative chosen by rank.

    Args:
        k: first rank (1-based, rank 1 = hardest) of the deputy negatives; used by "smoothed" and "rank".
        k_end: last rank (inclusive) averaged by "smoothed". ``1 <= k <= k_end`` is required for every
            variant (so that switching variants never meets an invalid range).
        variant: "smoothed" | "rank" | "median" | "hardest".
        gamma: weight of the positive distance (> 0).
        margin: hinge margin (>= 0). With the official 100 the hinge never switches off.

    Raises:
        ValueError: for any hyperparameter outside the ranges above, naming it and its value.

    Examples:
        >>> loss_fn = TruncatedTripletLoss()          # official: smoothed ranks 2..10, gamma 2, margin 100
        >>> loss = loss_fn(predictor_out_view1, target_projection_view2.detach())
        >>> loss = loss + loss_fn(predictor_out_view2, target_projection_view1.detach())
    """

    # It picks its negatives by rank: forward(..., return_stats=True) says which, and the ranks scale with
    # a gathered pool (the training loop reads this instead of the loss's name).
    selects_negatives = True

    def __init__(self, k: int = 2, k_end: int = 10, variant: str = "smoothed", gamma: float = 2.0,
                 margin: float = 100.0) -> None:
        super().__init__()
        name = type(self).__name__
        if variant not in VARIANTS:
            raise ValueError(f"{name}: unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        k = check_positive_int(k, "k", name)
        k_end = check_positive_int(k_end, "k_end", name)
        if k > k_end:
            raise ValueError(f"{name}: k = {k} > k_end = {k_end}; the deputy ranks k..k_end must satisfy "
                             "1 <= k <= k_end")
        if not gamma > 0:
            raise ValueError(f"{name}: gamma must be > 0, got {gamma}")
        if not margin >= 0:
            raise ValueError(f"{name}: margin must be >= 0, got {margin}")
        self.k = k
        self.k_end = k_end
        self.variant = variant
        self.gamma = float(gamma)
        self.margin = float(margin)

    def extra_repr(self) -> str:
        return (f"k={self.k}, k_end={self.k_end}, variant={self.variant!r}, gamma={self.gamma}, "
                f"margin={self.margin}")

    @property
    def negatives_needed(self) -> int:
        """Negatives each row must have: k_end for "smoothed", k for "rank", 1 for "median"/"hardest"."""
        return {"smoothed": self.k_end, "rank": self.k}.get(self.variant, 1)

    def forward(self, online: torch.Tensor, target: torch.Tensor,
                target_negatives: torch.Tensor | None = None, positive_offset: int = 0,
                return_stats: bool = False):
        """Loss for one direction (online view a against target view b).

        Args:
            online: [B, D] online predictions (any norm; L2-normalised here). Carries the gradient.
            target: [B, D] target projections of the other view (any norm). Row i is the positive of
                online row i. Pass it detached (EMA target); the loss does not detach it itself.
            target_negatives: optional [N, D] pool of target projections (N >= B) that replaces
                ``target`` as the pool of negatives, e.g. the target projections gathered from all
                processes by the caller (no torch.distributed call happens here). Rows
                ``positive_offset .. positive_offset + B - 1`` must be this process's ``target``:
                column ``positive_offset + i`` is row i's positive and is excluded from its negatives,
                every other row of the pool is a negative. Remember to scale k / k_end with N.
            positive_offset: where the local batch starts in ``target_negatives`` (0 without a pool).
            return_stats: also return a dict of detached per-row statistics (see Returns).

        Returns:
            The scalar loss (batch mean). With ``return_stats=True`` a tuple ``(loss, stats)`` where
            stats holds, all detached:
              - "negative_indices": LongTensor [B, n_selected], pool rows (columns of the distance matrix)
                of the deputy negatives, hardest first (n_selected = k_end - k + 1 for "smoothed", else 1);
              - "hardest_index": LongTensor [B], pool row of each row's hardest negative (rank 1);
              - "d_ap", "d_an": [B] positive distance and deputy distance;
              - "hinge_active": BoolTensor [B], rows whose hinge term is > 0.
            Use :func:`false_negative_rates` on it to compare the selected ranks with the hardest rank.

        Raises:
            ValueError: on shape mismatches (naming the shapes), a bad ``positive_offset``, or when the
                pool holds fewer negatives per row than the variant needs (naming B and the number).
        """
        name = type(self).__name__
        batch, dim = check_pair(online, target, name)
        if target_negatives is None:
            if positive_offset != 0:
                raise ValueError(f"{name}: positive_offset = {positive_offset} is only meaningful with "
                                 "target_negatives; without a pool the positives are the diagonal (offset 0)")
            pool_size = batch
        else:
            if target_negatives.dim() != 2 or target_negatives.shape[1] != dim:
                raise ValueError(f"{name}: target_negatives must be [N, {dim}] like target "
                                 f"{tuple(target.shape)}, got shape {tuple(target_negatives.shape)}")
            pool_size = target_negatives.shape[0]
            if pool_size < batch:
                raise ValueError(f"{name}: target_negatives has N = {pool_size} rows, fewer than the batch "
                                 f"B = {batch}; the pool must contain the local target")
            if isinstance(positive_offset, bool) or not 0 <= int(positive_offset) <= pool_size - batch \
                    or int(positive_offset) != positive_offset:
                raise ValueError(f"{name}: positive_offset must be an integer in [0, N - B] = "
                                 f"[0, {pool_size - batch}] (N = {pool_size}, B = {batch}), got {positive_offset!r}")
            positive_offset = int(positive_offset)
        negatives = pool_size - 1
        need = self.negatives_needed
        if negatives < need:
            where = (f"batch B = {batch}" if target_negatives is None
                     else f"pool N = {pool_size} (batch B = {batch})")
            raise ValueError(f"{name}: {where} gives {negatives} negatives per row, but variant "
                             f"{self.variant!r} (k = {self.k}, k_end = {self.k_end}) needs at least {need}; "
                             f"use a batch of at least {need + 1}")

        p = F.normalize(online, dim=1)
        z = F.normalize(target, dim=1)
        pool = z if target_negatives is None else F.normalize(target_negatives, dim=1)

        with torch.no_grad():
            # Distances to the whole pool, for selection only; the positive of each row is set to +inf
            # so it is never selected (exact: it sorts after every finite negative).
            dist = (p @ pool.T).mul_(-2.0)
            dist.diagonal(offset=positive_offset).fill_(float("inf"))  # entries (i, offset + i)
            hardest_index = None
            if self.variant == "median":
                # torch.median of n values is the ((n - 1) // 2 + 1)-th smallest (the lower median);
                # the +inf positive is the largest entry, so this rank is taken among the negatives.
                rank = (negatives - 1) // 2 + 1
                selected = dist.kthvalue(rank, dim=1, keepdim=True).indices
                if return_stats:
                    hardest_index = dist.argmin(dim=1)
            else:
                last = {"smoothed": self.k_end, "rank": self.k, "hardest": 1}[self.variant]
                first = 1 if self.variant == "hardest" else self.k
                top = dist.topk(last, dim=1, largest=False, sorted=True).indices  # [B, last], hardest first
                selected = top[:, first - 1:]
                hardest_index = top[:, 0]
            del dist

        # Recompute the selected similarities inside the graph: the values carry the gradient.
        neg = pool[selected]                                           # [B, n_selected, D]
        s_an = torch.bmm(neg, p.unsqueeze(2)).squeeze(2)               # [B, n_selected]
        d_an = -2.0 * s_an.mean(dim=1)                                 # [B]
        d_ap = -2.0 * (p * z).sum(dim=1)                               # [B]
        per_row = F.relu(self.gamma * d_ap - d_an + self.margin)       # [B]
        loss = per_row.mean()
        if not return_stats:
            return loss
        stats = {
            "negative_indices": selected,
            "hardest_index": hardest_index,
            "d_ap": d_ap.detach(),
            "d_an": d_an.detach(),
            "hinge_active": (per_row > 0).detach(),
        }
        return loss, stats


def false_negative_rates(stats: dict, labels: torch.Tensor,
                         pool_labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Share of same-class images among the selected deputy negatives and among the hardest negatives.

    Args:
        stats: the dict returned by ``TruncatedTripletLoss(..., return_stats=True)``.
        labels: [B] class labels of the batch rows (queries).
        pool_labels: [N] labels of the negative pool when ``target_negatives`` was used (default: labels).

    Returns:
        {"selected": 0-dim float tensor, "hardest": 0-dim float tensor}; call ``.item()`` to log them.
    """
    pool_labels = labels if pool_labels is None else pool_labels
    query = labels.view(-1, 1)
    selected = (pool_labels[stats["negative_indices"]] == query).float().mean()
    hardest = (pool_labels[stats["hardest_index"]] == labels.view(-1)).float().mean()
    return {"selected": selected, "hardest": hardest}


@torch.no_grad()
def hardest_false_negative_rate(online: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of rows whose hardest negative (most similar other target, cosine) has the row's class.

    The same definition as ``false_negative_rates(...)["hardest"]`` for the truncated triplet loss, computed
    from the embeddings alone, so that losses that select no negative (BYOL) or weight them all (InfoNCE)
    get the same diagnostic of how far classes cluster in the space the loss works in.

    Args:
        online: [B, D] online predictions; target: [B, D] target projections (row i is row i's positive);
        labels: [B] class labels.

    Returns:
        0-dim float tensor.
    """
    check_pair(online, target, "hardest_false_negative_rate")
    if online.shape[0] < 2:
        raise ValueError(f"hardest_false_negative_rate: a batch of {online.shape[0]} has no negatives")
    sim = F.normalize(online.float(), dim=1) @ F.normalize(target.float(), dim=1).T
    sim.fill_diagonal_(float("-inf"))  # the positive is never a negative
    hardest = sim.argmax(dim=1)
    return (labels[hardest] == labels).float().mean()
