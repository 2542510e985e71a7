"""The batched BYOL augmentations: each op against torchvision, the probabilities, the report, the seeding."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

import pipeline.loaders.augment as augment
from pipeline.loaders import colour
from pipeline.loaders.augment import BYOL_VIEWS, JITTER_OPS, TwoViewAugment, ViewAugment, ViewSpec

N = 4000  # samples for the probability checks: the standard error of a 0.2 share is 0.006


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(24, 3, 12, 10, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("mine,ref,lo,hi", [
    (colour.brightness, TF.adjust_brightness, 0.6, 1.4),
    (colour.contrast, TF.adjust_contrast, 0.6, 1.4),
    (colour.saturation, TF.adjust_saturation, 0.8, 1.2),
    (colour.hue, TF.adjust_hue, -0.1, 0.1),
])
def test_jitter_ops_match_torchvision(images, mine, ref, lo, hi):
    f = lo + (hi - lo) * torch.rand(len(images), generator=torch.Generator().manual_seed(2))
    expected = torch.stack([ref(img, float(fi)) for img, fi in zip(images, f)])
    torch.testing.assert_close(mine(images.clone(), f), expected, atol=2e-4, rtol=0)


def test_grayscale_blur_solarize_match_torchvision(images):
    torch.testing.assert_close(colour.grayscale(images), TF.rgb_to_grayscale(images), atol=2e-4, rtol=0)
    sigma = torch.linspace(0.1, 2.0, len(images))
    expected = torch.stack([TF.gaussian_blur(img, [5, 5], [float(s)] * 2) for img, s in zip(images, sigma)])
    torch.testing.assert_close(colour.gaussian_blur(images, sigma, 5), expected, atol=1e-5, rtol=0)
    u8 = (images * 255).round().to(torch.uint8)
    expected = TF.solarize(u8, 128).float() / 255  # BYOL's threshold on uint8 pixels
    torch.testing.assert_close(colour.solarize(u8.float() / 255), expected, atol=1e-6, rtol=0)
    assert colour.blur_kernel_size(224) == 23 and colour.blur_kernel_size(32) == 3


def _run(spec: ViewSpec, n: int = N, seed: int = 0):
    x = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    out, applied = ViewAugment(spec, seed=seed)(x, return_applied=True)
    return x, out, applied


@pytest.mark.parametrize("view", [0, 1])
def test_probabilities_of_both_views(view):
    spec = BYOL_VIEWS[view]
    _, out, a = _run(spec)
    share = {name: getattr(a, name).float().mean().item() for name in ("jitter", "grayscale", "blur", "solarize")}
    assert abs(share["jitter"] - 0.8) < 0.03
    assert abs(share["grayscale"] - 0.2) < 0.03
    if view == 0:
        assert share["blur"] == 1.0 and share["solarize"] == 0.0  # view 1: always blurred, never solarised
    else:
        assert abs(share["blur"] - 0.1) < 0.02 and abs(share["solarize"] - 0.2) < 0.03
    assert out.dtype == torch.float32 and out.shape == (N, 3, 4, 4)
    assert 0 <= out.min() and out.max() <= 1 + 1e-6  # a blur may round a hair above 1
    # Parameters in BYOL's ranges; each sample's jitter order is a permutation of the four operations.
    lo, hi = torch.tensor([0.6, 0.6, 0.8, -0.1]), torch.tensor([1.4, 1.4, 1.2, 0.1])
    assert ((a.factors >= lo) & (a.factors <= hi)).all()
    assert (a.order.sort(dim=1).values == torch.arange(4)).all()
    assert (a.sigma >= 0.1).all() and (a.sigma <= 2.0).all()


def test_report_matches_what_was_done():
    # Only one op switched on at a time, so its effect identifies the samples it was applied to.
    x, out, a = _run(ViewSpec(jitter_p=0, grayscale_p=0, blur_p=0, solarize_p=0.2))
    torch.testing.assert_close(out[a.solarize], torch.minimum(x, 1 - x)[a.solarize])
    torch.testing.assert_close(out[~a.solarize], x[~a.solarize])
    x, out, a = _run(ViewSpec(jitter_p=0, grayscale_p=0.2, blur_p=0, solarize_p=0))
    gray = out[a.grayscale]
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    torch.testing.assert_close(out[~a.grayscale], x[~a.grayscale])
    x, out, a = _run(ViewSpec(jitter_p=0, grayscale_p=0, blur_p=0.1, solarize_p=0))
    assert not torch.allclose(out[a.blur], x[a.blur]) and torch.equal(out[~a.blur], x[~a.blur])
    x, out, a = _run(ViewSpec(jitter_p=0.8, grayscale_p=0, blur_p=0, solarize_p=0), n=200)
    assert torch.equal(out[~a.jitter], x[~a.jitter]) and not torch.allclose(out[a.jitter], x[a.jitter])


def test_jitter_applies_the_reported_order_and_factors():
    x, out, a = _run(ViewSpec(jitter_p=1.0, grayscale_p=0, blur_p=0, solarize_p=0), n=16)
    for i in range(16):
        y = x[i:i + 1].clone()
        for op_ix in a.order[i].tolist():
            y = JITTER_OPS[op_ix](y, a.factors[i:i + 1, op_ix])
        torch.testing.assert_close(out[i:i + 1], y, atol=1e-5, rtol=0)


def test_seeded_and_independent_of_input_dtype_and_chunking(monkeypatch):
    x8 = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    a1, b1 = TwoViewAugment(seed=5)(x8, x8)
    a2, b2 = TwoViewAugment(seed=5)(x8.float() / 255, x8.float() / 255)
    torch.testing.assert_close(a1, a2) and torch.testing.assert_close(b1, b2)
    monkeypatch.setattr(augment, "CPU_CHUNK_BYTES", 3 * 16 * 16 * 4 * 5)  # slices of 5 samples
    a3, b3 = TwoViewAugment(seed=5)(x8, x8)
    torch.testing.assert_close(a1, a3) and torch.testing.assert_close(b1, b3)
    a4, _ = TwoViewAugment(seed=6)(x8, x8)
    assert not torch.allclose(a1, a4)
    assert not torch.allclose(a1, b1)  # the two views are augmented differently
    # Normalised with ImageNet statistics.
    assert -2.2 < a1.min() and a1.max() < 2.7


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        ViewAugment()(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="solarize_p"):
        ViewSpec(solarize_p=1.5)
    with pytest.raises(ValueError, match="blur_kernel"):
        ViewAugment(blur_kernel=4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x8 = torch.randint(0, 256, (32, 3, 24, 24), dtype=torch.uint8)
    cpu = TwoViewAugment(seed=1)(x8, x8)
    gpu = TwoViewAugment(seed=1).cuda()(x8.cuda(), x8.cuda())
    for c, g in zip(cpu, gpu):
        assert g.is_cuda
        torch.testing.assert_close(c, g.cpu(), atol=1e-4, rtol=0)
