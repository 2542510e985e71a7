import pytest
import torch
from torch import nn

from pipeline.evaluation.linear import LinearProbe, fit_on_features, fit_on_loader, topk_accuracy


def test_topk_accuracy_known_values():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    labels = torch.tensor([0, 2, 0, 1])
    top1, top2 = topk_accuracy(logits, labels, ks=(1, 2))
    assert top1 == pytest.approx(0.25) and top2 == pytest.approx(0.5)
    assert topk_accuracy(logits, labels, ks=(1, 5))[1] == 1.0  # k capped at the number of classes
    with pytest.raises(ValueError, match="empty"):
        topk_accuracy(logits[:0], labels[:0])


def _blobs(n, classes=4, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + torch.randn(n, dim, generator=g), y


def test_fast_path_learns_separable_features_and_reports_a_curve():
    result = fit_on_features(_blobs(400), _blobs(200, seed=1), classes=4, epochs=5, lr=0.15, batch_size=64)
    assert result.top1 > 0.95 and result.top5 == 1.0
    assert [c["epoch"] for c in result.curve] == [1, 2, 3, 4, 5]
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"]


def test_schedule_warms_up_then_decays_to_zero():
    probe = LinearProbe(4, 3, lr=0.2, epochs=10, steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        probe.step(torch.randn(8, 4), torch.randint(0, 3, (8,)))
        lrs.append(probe.opt.param_groups[0]["lr"])
    assert lrs[0] < 0.01 and max(lrs) == pytest.approx(0.2, rel=0.02) and lrs[-1] < 0.001
    assert probe.opt.param_groups[0]["weight_decay"] == 0 and probe.opt.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearProbe(4, 1, lr=0.1, epochs=1, steps_per_epoch=1)


def test_loader_path_keeps_the_backbone_frozen_in_eval_mode():
    backbone = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    x, y = _blobs(256)
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 256, 64)]
    xv, yv = _blobs(128, seed=1)
    with torch.no_grad():
        val = (backbone.eval()(xv), yv)  # the stage passes val features extracted once
    result = fit_on_loader(backbone.train(), batches, len(batches), val, dim=16, classes=4, epochs=15,
                           lr=0.15, device=torch.device("cpu"))
    assert result.top1 > 0.9
    assert not backbone.training
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in before.items())  # BN stats untouched too
    assert all(p.grad is None for p in backbone.parameters())
