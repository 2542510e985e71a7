"""TruncatedTripletLoss against a literal, loop-based reference (value and gradient), plus its edges."""

from __future__ import annotations

import pytest
import torch

from pipeline.losses import LOSSES, BYOLLoss, TruncatedTripletLoss, build_loss, false_negative_rates
from pipeline.losses import loss_hyperparameters

VARIANTS = ["smoothed", "rank", "median", "hardest"]


# --- independent reference: python loops, sorted(), one row at a time --------------------------------
def reference_rows(online, target, variant, k, k_end, gamma, margin, pool=None, offset=0):
    """Per-row loss terms, selected pool indices (hardest first) and hardest index, computed literally.

    Row i: positive distance -2 cos(online_i, target_i); negatives: every pool row j other than the
    positive (j != offset + i), sorted ascending by distance -2 cos(online_i, pool_j).
    """
    pool = target if pool is None else pool
    terms, selected, hardest = [], [], []
    for i in range(online.shape[0]):
        p = online[i] / torch.sqrt(torch.sum(online[i] * online[i]))
        z = target[i] / torch.sqrt(torch.sum(target[i] * target[i]))
        d_ap = -2.0 * torch.sum(p * z)
        negatives = []
        for j in range(pool.shape[0]):
            if j == offset + i:
                continue
            q = pool[j] / torch.sqrt(torch.sum(pool[j] * pool[j]))
            negatives.append((-2.0 * torch.sum(p * q), j))
        ranked = sorted(negatives, key=lambda pair: pair[0].item())  # rank 1 = smallest distance
        if variant == "smoothed":
            chosen = ranked[k - 1:k_end]
        elif variant == "rank":
            chosen = [ranked[k - 1]]
        elif variant == "hardest":
            chosen = [ranked[0]]
        elif variant == "median":
            chosen = [ranked[(len(ranked) - 1) // 2]]  # torch.median: the lower median
        else:
            raise AssertionError(variant)
        d_an = sum(d for d, _ in chosen) / len(chosen)
        value = gamma * d_ap - d_an + margin
        terms.append(value if value.item() > 0 else value * 0.0)
        selected.append([j for _, j in chosen])
        hardest.append(ranked[0][1])
    return terms, selected, hardest


def reference_loss(online, target, variant, k, k_end, gamma, margin, pool=None, offset=0):
    terms, _, _ = reference_rows(online, target, variant, k, k_end, gamma, margin, pool, offset)
    return sum(terms) / len(terms)


def value_and_grad(fn, online, *args, **kwargs):
    online = online.detach().clone().requires_grad_(True)
    loss = fn(online, *args, **kwargs)
    (grad,) = torch.autograd.grad(loss, online)
    return loss.detach(), grad


def random_inputs(batch, dim, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g, dtype=dtype), torch.randn(batch, dim, generator=g, dtype=dtype)


def mixed_hinge_inputs(batch, dim, seed):
    """Half the rows have online ~ target (inactive hinge at margin 0.3), half are unrelated (active)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    online = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    half = batch // 2
    online[:half] = target[:half] + 0.05 * torch.randn(half, dim, generator=g, dtype=torch.float64)
    return online, target


CONFIGS = [  # (variant, k, k_end)
    ("smoothed", 2, 10), ("smoothed", 1, 4), ("smoothed", 3, 3),
    ("rank", 2, 10), ("rank", 5, 10),
    ("median", 2, 10), ("hardest", 2, 10),
]


@pytest.mark.parametrize("variant,k,k_end", CONFIGS)
@pytest.mark.parametrize("batch", [11, 16, 23])
@pytest.mark.parametrize("margin", [100.0, 0.3])
def test_matches_reference_value_and_gradient(variant, k, k_end, batch, margin):
    dim = 8
    if margin == 100.0:
        online, target = random_inputs(batch, dim, seed=batch)
    else:
        online, target = mixed_hinge_inputs(batch, dim, seed=batch)
    loss_fn = TruncatedTripletLoss(k=k, k_end=k_end, variant=variant, gamma=2.0, margin=margin)
    got, got_grad = value_and_grad(loss_fn, online, target)
    ref, ref_grad = value_and_grad(
        lambda o, t: reference_loss(o, t, variant, k, k_end, 2.0, margin), online, target)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-9, atol=1e-12)
    _, stats = loss_fn(online, target, return_stats=True)
    if margin == 100.0:
        assert stats["hinge_active"].all()
    else:  # the constructed batch puts rows on both sides of the hinge
        assert stats["hinge_active"].any() and not stats["hinge_active"].all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_small_margin_has_active_and_inactive_rows(variant):
    """At margin 0.3 the constructed batch has rows on both sides of the hinge, far from its kink."""
    online, target = mixed_hinge_inputs(16, 8, seed=16)
    loss_fn = TruncatedTripletLoss(variant=variant, k=2, k_end=10, margin=0.3)
    _, stats = loss_fn(online, target, return_stats=True)
    raw = 2.0 * stats["d_ap"] - stats["d_an"] + 0.3
    assert (raw > 0.05).any() and (raw < -0.05).any(), raw
    assert (raw.abs() > 1e-6).all()
    assert torch.equal(stats["hinge_active"], raw > 0)
    # inactive rows contribute neither value nor gradient
    online = online.clone().requires_grad_(True)
    loss_fn(online, target).backward()
    inactive = ~stats["hinge_active"]
    assert torch.all(online.grad[inactive] == 0)
    assert torch.all(online.grad[~inactive].abs().sum(dim=1) > 0)
    # at the official margin every row is active
    _, stats100 = TruncatedTripletLoss(variant=variant)(online, target, return_stats=True)
    assert stats100["hinge_active"].all()


def test_official_margin_equals_closed_form():
    """Margin 100: loss = 100 - 4 mean s_ii + 2 mean(selected negative similarities of ranks 2..10)."""
    online, target = random_inputs(32, 16, seed=3)
    loss, stats = TruncatedTripletLoss()(online, target, return_stats=True)
    p = online / online.norm(dim=1, keepdim=True)
    z = target / target.norm(dim=1, keepdim=True)
    sim = p @ z.T
    s_an = sim.gather(1, stats["negative_indices"]).mean(dim=1)
    expected = 100.0 - 4.0 * sim.diagonal().mean() + 2.0 * s_an.mean()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [10, 11])  # 9 (odd) and 10 (even) negatives: the lower median matters
def test_median_is_lower_median_of_negatives(batch):
    online, target = random_inputs(batch, 6, seed=7 + batch)
    loss, stats = TruncatedTripletLoss(variant="median", margin=100.0)(online, target, return_stats=True)
    p = online / online.norm(dim=1, keepdim=True)
    z = target / target.norm(dim=1, keepdim=True)
    dist = -2.0 * p @ z.T
    for i in range(batch):
        negs = torch.cat([dist[i, :i], dist[i, i + 1:]])
        assert stats["d_an"][i] == pytest.approx(torch.median(negs).item(), abs=1e-12)
        if batch - 1 == 10:
            upper = sorted(negs.tolist())[5]
            assert stats["d_an"][i].item() != pytest.approx(upper)


@pytest.mark.parametrize("variant,k,k_end", CONFIGS)
def test_index_stats_match_reference(variant, k, k_end):
    online, target = random_inputs(19, 8, seed=11)
    _, stats = TruncatedTripletLoss(k=k, k_end=k_end, variant=variant)(online, target, return_stats=True)
    _, selected, hardest = reference_rows(online, target, variant, k, k_end, 2.0, 100.0)
    assert stats["negative_indices"].dtype == torch.long
    assert stats["negative_indices"].shape == (19, len(selected[0]))
    assert stats["negative_indices"].tolist() == selected
    assert stats["hardest_index"].tolist() == hardest
    assert not (stats["negative_indices"] == torch.arange(19).unsqueeze(1)).any()  # never the positive


def test_false_negative_rates():
    online, target = random_inputs(24, 8, seed=5)
    labels = torch.arange(24) % 3
    _, stats = TruncatedTripletLoss(k=2, k_end=5)(online, target, return_stats=True)
    rates = false_negative_rates(stats, labels)
    sel = stats["negative_indices"].tolist()
    expected_sel = sum(labels[j] == labels[i] for i, row in enumerate(sel) for j in row) / (24 * 4)
    expected_hard = sum(labels[j] == labels[i] for i, j in enumerate(stats["hardest_index"].tolist())) / 24
    assert rates["selected"].item() == pytest.approx(float(expected_sel))
    assert rates["hardest"].item() == pytest.approx(float(expected_hard))


@pytest.mark.parametrize("variant", VARIANTS)
def test_scale_invariance(variant):
    """Unnormalised inputs give the same loss and the same gradient as normalised ones."""
    online, target = random_inputs(14, 8, seed=2)
    g = torch.Generator().manual_seed(9)
    scale_o = torch.rand(14, 1, generator=g, dtype=torch.float64) * 10 + 0.1
    scale_t = torch.rand(14, 1, generator=g, dtype=torch.float64) * 10 + 0.1
    loss_fn = TruncatedTripletLoss(variant=variant, k=2, k_end=6, margin=0.3)
    unit_o = online / online.norm(dim=1, keepdim=True)
    unit_t = target / target.norm(dim=1, keepdim=True)
    a, grad_a = value_and_grad(lambda o: loss_fn(o * scale_o, target * scale_t), online)
    b, grad_b = value_and_grad(lambda o: loss_fn(o, unit_t), online)
    c, _ = value_and_grad(loss_fn, unit_o, unit_t)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_a, grad_b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_gradient_to_detached_target(variant):
    online, target_src = random_inputs(12, 8, seed=4)
    online.requires_grad_(True)
    target_src.requires_grad_(True)
    loss = TruncatedTripletLoss(variant=variant, k=2, k_end=5)(online, target_src.detach())
    assert loss.requires_grad
    loss.backward()
    assert target_src.grad is None
    assert online.grad is not None and online.grad.abs().sum() > 0
    # the loss itself never needs the target to require grad, and does not cut it when it does
    loss2 = TruncatedTripletLoss(variant=variant, k=2, k_end=5)(online.detach(), target_src)
    (grad_t,) = torch.autograd.grad(loss2, target_src)
    assert grad_t.abs().sum() > 0


@pytest.mark.parametrize("variant,k,k_end", CONFIGS)
def test_gathered_negatives_local_pool_equals_local_path(variant, k, k_end):
    online, target = random_inputs(15, 8, seed=6)
    loss_fn = TruncatedTripletLoss(k=k, k_end=k_end, variant=variant, margin=0.3)
    local, grad_local = value_and_grad(loss_fn, online, target)
    pooled, grad_pooled = value_and_grad(loss_fn, online, target, target_negatives=target, positive_offset=0)
    torch.testing.assert_close(pooled, local, rtol=0, atol=1e-14)
    torch.testing.assert_close(grad_pooled, grad_local, rtol=0, atol=1e-14)
    _, s_local = loss_fn(online, target, return_stats=True)
    _, s_pool = loss_fn(online, target, target_negatives=target, return_stats=True)
    assert torch.equal(s_local["negative_indices"], s_pool["negative_indices"])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("margin", [100.0, 0.3])
def test_gathered_negatives_match_reference(variant, margin):
    """A pool [other process, local target, other process] with the local batch at offset 7."""
    online, target = random_inputs(6, 8, seed=12)
    before, after = random_inputs(7, 8, seed=13)
    pool = torch.cat([before, target, after[:5]])  # N = 18
    loss_fn = TruncatedTripletLoss(k=2, k_end=10, variant=variant, margin=margin)
    got, got_grad = value_and_grad(loss_fn, online, target, target_negatives=pool, positive_offset=7)
    ref, ref_grad = value_and_grad(
        lambda o, t: reference_loss(o, t, variant, 2, 10, 2.0, margin, pool=pool, offset=7), online, target)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-9, atol=1e-12)
    _, stats = loss_fn(online, target, target_negatives=pool, positive_offset=7, return_stats=True)
    _, selected, hardest = reference_rows(online, target, variant, 2, 10, 2.0, margin, pool=pool, offset=7)
    assert stats["negative_indices"].tolist() == selected
    assert stats["hardest_index"].tolist() == hardest


def test_float32_matches_float64():
    online, target = random_inputs(64, 32, seed=21)
    for variant in VARIANTS:
        loss_fn = TruncatedTripletLoss(variant=variant)
        torch.testing.assert_close(loss_fn(online.float(), target.float()).double(), loss_fn(online, target),
                                   rtol=1e-6, atol=1e-5)


# --- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"k": 0}, "k must be >= 1, got 0"),
    ({"k": -3}, "k must be >= 1"),
    ({"k": 2.5}, "k must be an integer"),
    ({"k_end": 0, "k": 1}, "k_end must be >= 1"),
    ({"k": 11, "k_end": 10}, "k = 11 > k_end = 10"),
    ({"gamma": 0.0}, "gamma must be > 0, got 0.0"),
    ({"gamma": -1.0}, "gamma must be > 0"),
    ({"margin": -0.1}, "margin must be >= 0, got -0.1"),
    ({"variant": "mean"}, "unknown variant 'mean'; expected one of smoothed, rank, median, hardest"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TruncatedTripletLoss(**kwargs)


@pytest.mark.parametrize("variant,k,k_end,batch,need", [
    ("smoothed", 2, 10, 10, 10), ("smoothed", 2, 10, 5, 10), ("rank", 4, 10, 4, 4),
    ("median", 2, 10, 1, 1), ("hardest", 2, 10, 1, 1),
])
def test_too_few_negatives(variant, k, k_end, batch, need):
    online, target = random_inputs(batch, 4, seed=1)
    loss_fn = TruncatedTripletLoss(k=k, k_end=k_end, variant=variant)
    with pytest.raises(ValueError, match=rf"batch B = {batch} gives {batch - 1} negatives .* at least {need}"):
        loss_fn(online, target)
    ok_online, ok_target = random_inputs(need + 1, 4, seed=1)
    assert torch.isfinite(loss_fn(ok_online, ok_target))  # B = need + 1 is enough


def test_too_few_negatives_in_pool():
    online, target = random_inputs(4, 4, seed=1)
    with pytest.raises(ValueError, match=r"pool N = 6 \(batch B = 4\) gives 5 negatives .* at least 10"):
        TruncatedTripletLoss()(online, target, target_negatives=torch.cat([target, target[:2]]))


@pytest.mark.parametrize("online_shape,target_shape", [((8, 4), (8, 5)), ((8, 4), (7, 4)), ((8,), (8,)),
                                                       ((2, 8, 4), (2, 8, 4))])
def test_shape_mismatch(online_shape, target_shape):
    with pytest.raises(ValueError, match=rf"online shape \({online_shape[0]},.*target shape \({target_shape[0]},"):
        TruncatedTripletLoss()(torch.randn(*online_shape), torch.randn(*target_shape))


def test_bad_pool_and_offset():
    online, target = random_inputs(12, 4, seed=1)
    loss_fn = TruncatedTripletLoss()
    with pytest.raises(ValueError, match=r"target_negatives must be \[N, 4\].*got shape \(20, 5\)"):
        loss_fn(online, target, target_negatives=torch.randn(20, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="N = 8 rows, fewer than the batch B = 12"):
        loss_fn(online, target, target_negatives=target[:8])
    with pytest.raises(ValueError, match=r"positive_offset must be an integer in \[0, N - B\] = \[0, 8\]"):
        loss_fn(online, target, target_negatives=torch.cat([target, target[:8]]), positive_offset=9)
    with pytest.raises(ValueError, match="positive_offset = 3 is only meaningful with target_negatives"):
        loss_fn(online, target, positive_offset=3)


# --- registry ---------------------------------------------------------------------------------------------
def test_build_loss_registry():
    assert set(LOSSES) == {"truncated_triplet", "byol", "infonce", "nt_xent", "negative_cosine", "coding_rate", "swav"}
    triplet = build_loss("truncated_triplet", k=3, k_end=7, variant="rank", gamma=1.5, margin=0.5)
    assert isinstance(triplet, TruncatedTripletLoss)
    assert (triplet.k, triplet.k_end, triplet.variant, triplet.gamma, triplet.margin) == (3, 7, "rank", 1.5, 0.5)
    assert isinstance(build_loss("byol"), BYOLLoss)
    assert build_loss("infonce", temperature=0.5).temperature == 0.5
    assert loss_hyperparameters("truncated_triplet") == ("k", "k_end", "variant", "gamma", "margin")
    assert loss_hyperparameters("byol") == ()
    with pytest.raises(ValueError, match="unknown loss 'simclr'; expected one of: truncated_triplet, byol, infonce, "
                                         "nt_xent, negative_cosine"):
        build_loss("simclr")
    with pytest.raises(ValueError, match="loss 'byol' does not take temperature; it accepts no hyperparameters"):
        build_loss("byol", temperature=0.2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        build_loss("infonce", temperature=0.0)
