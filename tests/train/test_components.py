"""Training components: LARS, schedules, EMA target, export to torchvision, checkpoints, kNN."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision

from pipeline.evaluation.knn import knn_top1
from pipeline.models import SiameseModel, build_backbone, export_backbone_state_dict
from pipeline.models.siamese import ema_momentum
from pipeline.train.checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state
from pipeline.train.lars import LARS, split_decay_groups
from pipeline.train.optim import build_optimizer
from pipeline.train.schedule import warmup_cosine


def test_warmup_then_cosine_to_zero():
    lrs = [warmup_cosine(s, 100, 10, 1.0) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[10] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[100] == pytest.approx(0.0, abs=1e-12)


def test_ema_momentum_cosine_from_base_to_one():
    assert ema_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert ema_momentum(0.99, 50, 100) == pytest.approx(0.995)
    assert ema_momentum(0.99, 100, 100) == pytest.approx(1.0)


def test_lars_excludes_bn_and_bias_and_scales_by_trust_ratio():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    groups = split_decay_groups(net.named_parameters())
    assert [len(g["params"]) for g in groups] == [1, 3]  # the weight; bias + BN weight + BN bias
    w = net[0].weight
    before = w.detach().clone()
    opt = LARS(groups, lr=1.0, momentum=0.0, weight_decay=0.0, trust_coefficient=1e-3)
    w.grad = torch.ones_like(w)
    opt.step()
    step = (before - w.detach()).norm()
    # One step moves the weight by eta * ||w|| (trust ratio x gradient norm), whatever the gradient scale.
    assert step.item() == pytest.approx(1e-3 * before.norm().item(), rel=1e-4)
    bias = net[0].bias
    b0 = bias.detach().clone()
    bias.grad = torch.full_like(bias, 0.5)
    opt.step()
    assert torch.allclose(b0 - bias.detach(), torch.full_like(bias, 0.5))  # plain SGD step: excluded


@pytest.mark.parametrize("name", ["lars", "sgd", "adamw"])
def test_optimizers_keep_decay_off_bn_and_bias(name):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = build_optimizer(name, net.named_parameters(), lr=0.1, weight_decay=0.5, momentum=0.9)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]


def test_ema_update_moves_target_towards_online():
    model = SiameseModel("resnet18", "imagenet", 32, 16, 32)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    t0 = next(model.target_backbone.parameters()).clone()
    o = next(model.backbone.parameters())
    model.update_target(0.9)
    assert torch.allclose(next(model.target_backbone.parameters()), 0.9 * t0 + 0.1 * o)
    assert not any(p.requires_grad for p in model.target_parameters())


def test_symmetrised_forward_gives_gradient_to_online_only():
    torch.manual_seed(0)
    model = SiameseModel("resnet18", "imagenet", 32, 16, 32)
    x1, x2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    loss, parts, _ = model(x1, x2, lambda p, z: (p - z).pow(2).mean())
    loss.backward()
    assert torch.allclose(loss.detach(), parts["view1->view2"] + parts["view2->view1"])
    assert model.predictor[0].weight.grad is not None
    assert all(p.grad is None for p in model.target_parameters())


def test_multi_crop_forward_averages_every_small_view_against_both_targets():
    # Literal multi-crop loss: the two-view terms plus, for each small view, its prediction against both
    # large views' target projections, averaged over the 2 + 2m pairs and scaled back to two terms.
    torch.manual_seed(0)
    model = SiameseModel("resnet18", "imagenet", 32, 16, 32).eval()  # eval: BN does not mix the views
    x1, x2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    small = (torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16))
    loss_fn = lambda p, z: (p - z).pow(2).sum(dim=1).mean()  # noqa: E731
    loss, parts, _ = model(x1, x2, loss_fn, local=small)
    z1, z2 = model.target(x1), model.target(x2)
    pairs = [loss_fn(model.online(x1), z2), loss_fn(model.online(x2), z1)]
    pairs += [loss_fn(model.online(v), z) for v in small for z in (z1, z2)]
    assert torch.allclose(loss, 2 * torch.stack(pairs).mean(), rtol=1e-5)
    assert torch.allclose(parts["view1->view2"], pairs[0]) and torch.allclose(parts["view2->view1"], pairs[1])
    loss.backward()
    assert all(p.grad is None for p in model.target_parameters())
    two_view, _, _ = model(x1, x2, loss_fn)
    assert torch.allclose(two_view, pairs[0] + pairs[1])  # no local views: the plain symmetrised loss


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_export_loads_into_torchvision_with_only_fc_missing(arch, tmp_path):
    backbone, dim = build_backbone(arch)
    atomic_save(export_backbone_state_dict(backbone), tmp_path / "backbone.pt")
    sd = torch.load(tmp_path / "backbone.pt", weights_only=True)
    result = getattr(torchvision.models, arch)(weights=None).load_state_dict(sd, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and result.unexpected_keys == []
    assert dim == (512 if arch == "resnet18" else 2048)


def test_checkpoint_round_trip_is_weights_only_and_atomic(tmp_path):
    path = tmp_path / "ckpt.pt"
    state = rng_state()
    atomic_save({"w": torch.arange(3), "rng": state, "history": [{"loss": 1.0}]}, path)
    assert not (tmp_path / "ckpt.pt.tmp").exists()
    loaded = load_checkpoint(path)
    a = torch.rand(3)
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), a)  # the restored generator replays the same numbers
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="ckpt.pt: not a readable checkpoint"):
        load_checkpoint(path)


def test_knn_on_separable_and_random_features():
    torch.manual_seed(0)
    centers = torch.randn(5, 16) * 5
    ytr, yva = torch.arange(500) % 5, torch.arange(100) % 5
    xtr, xva = centers[ytr] + torch.randn(500, 16), centers[yva] + torch.randn(100, 16)
    assert knn_top1(xtr, ytr, xva, yva, k=20) > 0.95
    assert knn_top1(torch.randn(500, 16), ytr, torch.randn(100, 16), yva, k=20) < 0.4
    with pytest.raises(ValueError, match="non-empty"):
        knn_top1(xtr[:0], ytr[:0], xva, yva)


def test_knn_weights_votes_by_similarity():
    # Two close neighbours of class 1 outweigh three distant ones of class 0 at a low temperature.
    bank = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [0.05, 1.0], [0.1, 1.0]])
    labels = torch.tensor([1, 1, 0, 0, 0])
    query = torch.tensor([[1.0, 0.02]])
    assert knn_top1(bank, labels, query, torch.tensor([1]), k=5, temperature=0.1) == 1.0
    assert math.isclose(knn_top1(bank, labels, query, torch.tensor([0]), k=5, temperature=0.1), 0.0)


class _RunsCode:
    """Unpickling this would run a shell command: what a malicious checkpoint carries."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_checkpoint_and_backbone_carrying_code_are_refused_without_running_it(tmp_path):
    from pipeline.evaluation.backbone_io import BackboneLoadError, load_backbone

    marker = tmp_path / "pwned"
    for name in ("checkpoint.pt", "backbone.pt"):
        torch.save({"model": _RunsCode(marker)}, tmp_path / name)
    with pytest.raises(ValueError, match="checkpoint.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    with pytest.raises(BackboneLoadError, match="backbone.pt: not a readable torch state_dict"):
        load_backbone(tmp_path / "backbone.pt", "resnet18", "small")
    assert not marker.exists()
