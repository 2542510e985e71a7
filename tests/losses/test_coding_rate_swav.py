"""EMP-SSL's coding-rate loss and SwAV's swapped prediction against literal loop implementations of their
published formulas; SwAV's Sinkhorn under two gloo processes equals the one-process run on the whole batch."""
from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from pipeline.losses import CodingRateLoss, SwAVLoss, build_loss
from pipeline.losses.swav import sinkhorn


def _unit(v):
    return v / torch.sqrt(sum(x * x for x in v))


def coding_rate_literal(z, eps, weight):
    """EMP-SSL: -(1/n) sum_i 1/2 logdet(I + d/(B eps) sum_b z_ib z_ib^T) - weight (1/n) sum_i mean_b cos(z_ib, zbar_b)."""
    n, batch, dim = z.shape
    units = [[_unit(z[i, b]) for b in range(batch)] for i in range(n)]
    rate = 0.0
    for i in range(n):
        m = torch.eye(dim, dtype=z.dtype)
        for b in range(batch):
            m = m + dim / (batch * eps) * torch.outer(units[i][b], units[i][b])
        rate = rate + 0.5 * torch.log(torch.det(m))
    cosine = 0.0
    for b in range(batch):
        mean = sum(units[i][b] for i in range(n)) / n
        for i in range(n):
            cosine = cosine + torch.dot(units[i][b], mean) / (units[i][b].norm() * mean.norm())
    return -rate / n - weight * cosine / (n * batch)


def sinkhorn_literal(scores, eps, iterations):
    """SwAV's Sinkhorn-Knopp, entry by entry: Q = exp(S / eps)^T / sum; rows to 1/K, columns to 1/B; B Q^T."""
    batch, k = scores.shape
    q = [[math.exp(scores[b, j].item() / eps) for b in range(batch)] for j in range(k)]
    total = sum(map(sum, q))
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        q = [[v / sum(row) / k for v in row] for row in q]
        cols = [sum(q[j][b] for j in range(k)) for b in range(batch)]
        q = [[q[j][b] / cols[b] / batch for b in range(batch)] for j in range(k)]
    return torch.tensor([[q[j][b] * batch for j in range(k)] for b in range(batch)], dtype=scores.dtype)


def swav_literal(large, small, temperature, eps, iterations):
    views = [*large, *small]
    total, pairs = 0.0, 0
    for g, s_g in enumerate(large):
        codes = sinkhorn_literal(s_g.detach(), eps, iterations)
        for v, s_v in enumerate(views):
            if v == g:
                continue
            for b in range(len(s_v)):
                log_norm = torch.log(sum(torch.exp(s_v[b, j] / temperature) for j in range(s_v.shape[1])))
                total = total - sum(codes[b, j] * (s_v[b, j] / temperature - log_norm)
                                    for j in range(s_v.shape[1])) / len(s_v)
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("eps, weight", [(0.2, 200.0), (0.5, 1.0)])
def test_coding_rate_matches_the_formula_in_value_and_gradient(eps, weight):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    loss, terms = CodingRateLoss(eps, weight)(z, return_terms=True)
    ref = coding_rate_literal(z, eps, weight)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-10)
    assert loss.item() == pytest.approx(-terms["coding_rate"].item() - weight * terms["invariance"].item(), rel=1e-10)
    torch.testing.assert_close(torch.autograd.grad(loss, z)[0], torch.autograd.grad(ref, z)[0])


def test_coding_rate_rewards_spread_embeddings_and_agreeing_patches():
    loss = CodingRateLoss(0.2, 0.0)
    spread = torch.eye(4).repeat(2, 1).unsqueeze(0).repeat(2, 1, 1)     # 8 images over 4 directions
    collapsed = torch.ones(2, 8, 4)                                      # every image on one direction
    assert loss(spread) < loss(collapsed)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(1, 8, 4, generator=gen)
    agree, disagree = z.repeat(2, 1, 1), torch.cat([z, -z])
    invariance = CodingRateLoss(0.2, 1.0)
    assert invariance(agree, return_terms=True)[1]["invariance"].item() == pytest.approx(1.0)
    assert invariance(agree) < invariance(disagree)


def test_coding_rate_refuses_a_single_patch_or_image_naming_the_shape():
    with pytest.raises(ValueError, match=r"CodingRateLoss: expected \[patches >= 2, batch >= 2, dim\].*\(1, 4, 3\)"):
        CodingRateLoss()(torch.randn(1, 4, 3))
    with pytest.raises(ValueError, match="eps must be > 0, got 0"):
        build_loss("coding_rate", eps=0)


def test_coding_rate_runs_in_float32_under_bf16_autocast():
    z = torch.randn(3, 6, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = CodingRateLoss()(z.bfloat16())
    assert value.dtype == torch.float32 and math.isfinite(value.item())


def test_sinkhorn_matches_the_literal_iterations_and_spreads_the_batch_over_the_prototypes():
    gen = torch.Generator().manual_seed(2)
    scores = torch.nn.functional.normalize(torch.randn(6, 4, generator=gen, dtype=torch.float64), dim=1)
    codes = sinkhorn(scores, eps=0.3, iterations=3)
    torch.testing.assert_close(codes, sinkhorn_literal(scores, 0.3, 3))
    torch.testing.assert_close(codes.sum(1), torch.ones(6, dtype=torch.float64))  # one image, one unit of mass
    many = sinkhorn(scores, eps=0.3, iterations=50)
    torch.testing.assert_close(many.sum(0), torch.full((4,), 6 / 4, dtype=torch.float64), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_small", [0, 2])
def test_swav_matches_the_formula_in_value_and_gradient(n_small):
    gen = torch.Generator().manual_seed(3)
    views = [torch.randn(5, 4, generator=gen, dtype=torch.float64).clamp(-1, 1).requires_grad_()
             for _ in range(2 + n_small)]
    ours = SwAVLoss(0.1, 0.05, 3)(views[:2], views[2:])
    ref = swav_literal(views[:2], views[2:], 0.1, 0.05, 3)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-9)
    for a, b in zip(torch.autograd.grad(ours, views), torch.autograd.grad(ref, views)):
        torch.testing.assert_close(a, b)


def test_swav_refuses_mismatched_scores_naming_the_shapes():
    with pytest.raises(ValueError, match=r"SwAVLoss: expected \[B, K\] scores of one shape.*\(4, 3\).*\(4, 5\)"):
        SwAVLoss()([torch.randn(4, 3)], [torch.randn(4, 5)])
    with pytest.raises(ValueError, match="at least one large view and two views"):
        SwAVLoss()([torch.randn(4, 3)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sinkhorn_rank(rank: int, port: int, scores: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        out[rank] = sinkhorn(scores.chunk(2)[rank], eps=0.1, iterations=3)
    finally:
        torch.distributed.destroy_process_group()


def test_sinkhorn_across_two_processes_equals_one_process_on_the_whole_batch():
    gen = torch.Generator().manual_seed(4)
    scores = torch.nn.functional.normalize(torch.randn(8, 5, generator=gen), dim=1)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_sinkhorn_rank, args=(_free_port(), scores, out), nprocs=2, join=True)
        distributed = torch.cat([out[0], out[1]])
    torch.testing.assert_close(distributed, sinkhorn(scores, eps=0.1, iterations=3))
