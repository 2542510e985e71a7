"""SimCLR's NT-Xent and SimSiam's negative cosine against literal loop implementations of their formulas."""
from __future__ import annotations

import math

import pytest
import torch

from pipeline.losses import NegativeCosineLoss, NTXentLoss, build_loss


def nt_xent_literal(z1, z2, temperature):
    """SimCLR's l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t), averaged over the 2N anchors."""
    z = torch.cat([z1, z2])
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        positive = i + n if i < n else i - n
        sims = [torch.dot(z[i], z[k]) / (z[i].norm() * z[k].norm()) / temperature for k in range(2 * n)]
        denominator = sum(torch.exp(sims[k]) for k in range(2 * n) if k != i)
        total = total - torch.log(torch.exp(sims[positive]) / denominator)
    return total / (2 * n)


def negative_cosine_literal(p, z):
    return sum(-torch.dot(p[i], z[i]) / (p[i].norm() * z[i].norm()) for i in range(len(p))) / len(p)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_the_formula_in_value_and_gradient(temperature):
    gen = torch.Generator().manual_seed(3)
    z1 = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    ours = NTXentLoss(temperature)(z1, z2)
    ref = nt_xent_literal(z1, z2, temperature)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    g_ours = torch.autograd.grad(ours, (z1, z2))
    g_ref = torch.autograd.grad(nt_xent_literal(z1, z2, temperature), (z1, z2))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)


def test_nt_xent_is_low_when_views_agree_and_images_differ():
    eye = torch.eye(4, dtype=torch.float64)
    matched = NTXentLoss(0.1)(eye, eye).item()       # each positive identical, negatives orthogonal
    shuffled = NTXentLoss(0.1)(eye, eye.roll(1, 0)).item()
    # matched: -log(e^10 / (e^10 + 6)); shuffled: the true partner counts as a negative, -log(1 / (e^10 + 6))
    assert matched == pytest.approx(-math.log(math.exp(10) / (math.exp(10) + 6)))
    assert shuffled == pytest.approx(math.log(math.exp(10) + 6))


def test_negative_cosine_matches_the_formula_in_value_and_gradient():
    gen = torch.Generator().manual_seed(4)
    p = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    z = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    ours, ref = NegativeCosineLoss()(p, z), negative_cosine_literal(p, z)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    torch.testing.assert_close(torch.autograd.grad(ours, p)[0],
                               torch.autograd.grad(negative_cosine_literal(p, z), p)[0])


def test_registry_builds_them_and_refuses_bad_inputs_by_name():
    assert isinstance(build_loss("nt_xent", temperature=0.3), NTXentLoss)
    assert isinstance(build_loss("negative_cosine"), NegativeCosineLoss)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        NTXentLoss(0)
    with pytest.raises(ValueError, match="at least 2"):
        NTXentLoss()(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="negative_cosine.*does not take temperature"):
        build_loss("negative_cosine", temperature=0.2)
