"""BYOLLoss against its formula and InfoNCELoss against an independently built cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.losses import BYOLLoss, InfoNCELoss


def random_inputs(batch, dim, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g, dtype=dtype), torch.randn(batch, dim, generator=g, dtype=dtype)


def value_and_grad(fn, online, *args):
    online = online.detach().clone().requires_grad_(True)
    loss = fn(online, *args)
    (grad,) = torch.autograd.grad(loss, online)
    return loss.detach(), grad


def byol_reference(online, target):
    total = 0.0
    for i in range(online.shape[0]):
        cos = torch.dot(online[i], target[i]) / (online[i].norm() * target[i].norm())
        total = total + (2.0 - 2.0 * cos)
    return total / online.shape[0]


def infonce_reference_ce(online, target, temperature):
    """Logits built from explicit norms, fed to torch's cross-entropy with the diagonal as labels."""
    p = online / online.norm(dim=1, keepdim=True)
    z = target / target.norm(dim=1, keepdim=True)
    logits = torch.einsum("id,jd->ij", p, z) / temperature
    return F.cross_entropy(logits, torch.arange(online.shape[0]))


def infonce_reference_loop(online, target, temperature):
    """-log softmax of the positive, one row at a time."""
    total = 0.0
    for i in range(online.shape[0]):
        row = [torch.dot(online[i], target[j]) / (online[i].norm() * target[j].norm()) / temperature
               for j in range(online.shape[0])]
        log_denominator = torch.logsumexp(torch.stack(row), dim=0)
        total = total + (log_denominator - row[i])
    return total / online.shape[0]


# --- BYOL -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 5, 32])
def test_byol_matches_formula(batch):
    online, target = random_inputs(batch, 16, seed=batch)
    got, got_grad = value_and_grad(BYOLLoss(), online, target)
    ref, ref_grad = value_and_grad(byol_reference, online, target)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-10, atol=1e-12)


def test_byol_extremes_and_scale_invariance():
    online, _ = random_inputs(8, 16, seed=1)
    loss = BYOLLoss()
    assert loss(online, 3.0 * online).item() == pytest.approx(0.0, abs=1e-12)
    assert loss(online, -online).item() == pytest.approx(4.0, abs=1e-12)
    _, target = random_inputs(8, 16, seed=2)
    torch.testing.assert_close(loss(online * 7.0, target * 0.1), loss(online, target), rtol=1e-12, atol=1e-12)


def test_byol_no_gradient_to_detached_target():
    online, target = random_inputs(6, 8, seed=3)
    online.requires_grad_(True)
    target.requires_grad_(True)
    BYOLLoss()(online, target.detach()).backward()
    assert target.grad is None and online.grad.abs().sum() > 0


@pytest.mark.parametrize("shapes", [((4, 8), (4, 9)), ((4, 8), (5, 8)), ((8,), (8,)), ((0, 8), (0, 8))])
def test_byol_bad_shapes(shapes):
    with pytest.raises(ValueError, match=rf"BYOLLoss: .*shape \({shapes[0][0]},"):
        BYOLLoss()(torch.randn(*shapes[0]), torch.randn(*shapes[1]))


# --- InfoNCE ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [2, 9, 32])
@pytest.mark.parametrize("temperature", [0.2, 0.07, 1.0])
def test_infonce_matches_cross_entropy(batch, temperature):
    online, target = random_inputs(batch, 16, seed=batch)
    loss_fn = InfoNCELoss(temperature=temperature)
    got, got_grad = value_and_grad(loss_fn, online, target)
    ref, ref_grad = value_and_grad(lambda o, t: infonce_reference_ce(o, t, temperature), online, target)
    loop, loop_grad = value_and_grad(lambda o, t: infonce_reference_loop(o, t, temperature), online, target)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got, loop, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, loop_grad, rtol=1e-10, atol=1e-12)


def test_infonce_known_values_and_scale_invariance():
    online, target = random_inputs(16, 8, seed=4)
    loss_fn = InfoNCELoss(temperature=0.2)
    # orthogonal one-hot views: each row's positive logit 1/t, negatives 0
    eye = torch.eye(8, dtype=torch.float64)
    expected = -math.log(math.exp(5.0) / (math.exp(5.0) + 7.0))
    assert loss_fn(eye, 2.0 * eye).item() == pytest.approx(expected, rel=1e-12)
    scale = torch.linspace(0.1, 10.0, 16, dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(loss_fn(online * scale, target / scale), loss_fn(online, target),
                               rtol=1e-12, atol=1e-12)


def test_infonce_gradient_reaches_target_only_when_caller_allows():
    online, target = random_inputs(6, 8, seed=5)
    online.requires_grad_(True)
    target.requires_grad_(True)
    InfoNCELoss()(online, target.detach()).backward()
    assert target.grad is None and online.grad.abs().sum() > 0
    (grad_t,) = torch.autograd.grad(InfoNCELoss()(online.detach(), target), target)
    assert grad_t.abs().sum() > 0


@pytest.mark.parametrize("temperature", [0.0, -0.1])
def test_infonce_bad_temperature(temperature):
    with pytest.raises(ValueError, match=rf"temperature must be > 0, got {temperature}"):
        InfoNCELoss(temperature=temperature)


def test_infonce_bad_inputs():
    with pytest.raises(ValueError, match=r"online shape \(4, 8\) and target shape \(4, 6\)"):
        InfoNCELoss()(torch.randn(4, 8), torch.randn(4, 6))
    with pytest.raises(ValueError, match="batch B = 1 gives 0 negatives per row"):
        InfoNCELoss()(torch.randn(1, 8), torch.randn(1, 8))
