"""SYSU-30k self-supervised adaptation (pipeline.evaluation.adapt) on in-memory two-view batches."""
from __future__ import annotations

import math

import pytest
import torch

from pipeline.config import ParamsError, compose, validate_params
from pipeline.evaluation.adapt import TooFewBatches, adapt_backbone, adapt_params
from pipeline.evaluation.backbone_io import random_backbone
from pipeline.train.loop import TrainingDiverged, random_resize

# Small heads, ranks 2..4 (a batch of 8 has the 7 negatives they need), portrait 32 x 16 views.
SMALL = ["model.projector_hidden=32", "model.projector_out=16", "model.predictor_hidden=32", "loss.k_end=4",
         "train.device=cpu", "eval.reid.adapt_epochs=2", "eval.reid.adapt_batch_size=8",
         "eval.reid.adapt_height=32", "eval.reid.adapt_width=16", "eval.reid.adapt_warmup_epochs=0.5"]


def _params(*extra: str):
    return validate_params(compose([*SMALL, *extra]))


class _Views:
    """The SSLLoader interface the loop uses (len, set_epoch, iteration, augmentation state) over fixed batches."""

    def __init__(self, batches=2, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.batches = [(torch.randn(8, 3, 32, 16, generator=gen), torch.randn(8, 3, 32, 16, generator=gen),
                         torch.arange(8) % 4) for _ in range(batches)]
        self.epochs, self.restored = [], None

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def augment_state(self):
        return {"view1": torch.tensor([1]), "view2": torch.tensor([2])}

    def set_augment_state(self, state):
        self.restored = state


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: one thread is as fast, and immune to OpenMP spin-waits on a busy shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _adapt(params, seed=5):
    backbone = random_backbone("resnet18", "imagenet", seed)[0]
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    loader = _Views()
    adapted, result = adapt_backbone(backbone, params, loader, torch.device("cpu"), name="pretrained")
    return before, backbone, adapted, result, loader


def test_adaptation_trains_the_backbone_and_leaves_bn_sane():
    before, original, adapted, result, loader = _adapt(_params())
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in before.items()), "input module untouched"
    after = adapted.state_dict()
    assert set(after) == set(before)
    assert not torch.equal(after["conv1.weight"], before["conv1.weight"])
    assert not torch.equal(after["layer4.1.conv2.weight"], before["layer4.1.conv2.weight"])
    assert (result.epochs, result.steps, result.steps_per_epoch) == (2, 4, 2)
    assert loader.epochs == [0, 1] and loader.restored is not None  # the loader is replayable for the twin
    assert len(result.epoch_losses) == 2 and all(math.isfinite(v) for v in result.epoch_losses)
    assert 150 < result.final_loss < 250  # symmetrised, margin 100: about 2 x (100 - 4 s_ap + 2 s_an)
    assert not adapted.training, "returned ready for feature extraction"
    bns = [m for m in adapted.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    for name, m in adapted.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.isfinite(m.running_mean).all() and torch.isfinite(m.running_var).all(), name
            assert (m.running_var > 0).all(), name
            # Two online forward passes (view 1, view 2) per step update the statistics.
            assert int(m.num_batches_tracked) == int(before[f"{name}.num_batches_tracked"]) + 2 * result.steps
            assert not torch.equal(m.running_mean, before[f"{name}.running_mean"]), name
    feats = adapted(torch.randn(4, 3, 64, 32))
    assert feats.shape == (4, 512) and torch.isfinite(feats).all() and feats.std(0).mean() > 0


def test_adaptation_is_deterministic_on_cpu():
    params = _params()
    _, _, a, ra, _ = _adapt(params)
    _, _, b, rb, _ = _adapt(params)
    assert ra.epoch_losses == rb.epoch_losses
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_adaptation_reads_its_recipe_from_params():
    p = _params("train.lr=0.7", "train.optimizer=sgd")
    a = adapt_params(p)
    assert (a.train.epochs, a.train.batch_size, a.train.lr, a.train.warmup_epochs) == (2, 8, 0.7, 0.5)
    assert a.train.optimizer == "sgd" and a.train.base_ema == p.train.base_ema and a.loss == p.loss
    assert p.train.epochs != 2 or p.train.batch_size != 8  # the params themselves are not modified
    assert adapt_params(_params("eval.reid.adapt_lr=0.05")).train.lr == 0.05


def test_too_few_batches_and_divergence_are_clear_errors():
    loader = _Views(batches=0)
    with pytest.raises(TooFewBatches, match="0 batch"):
        adapt_backbone(random_backbone("resnet18", "imagenet", 0)[0], _params(), loader, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"^eval.reid.adapt_epochs = 0: nothing to adapt \(expected >= 1\)$"):
        adapt_backbone(random_backbone("resnet18", "imagenet", 0)[0], _params("eval.reid.adapt_epochs=0"),
                       _Views(), torch.device("cpu"))
    with pytest.raises(TrainingDiverged, match="adaptation of the random_init backbone diverged.*eval.reid.adapt_lr"):
        adapt_backbone(random_backbone("resnet18", "imagenet", 0)[0], _params("eval.reid.adapt_lr=1e30"),
                       _Views(), torch.device("cpu"), name="random_init")


def test_bad_adaptation_params_name_the_key():
    with pytest.raises(ParamsError, match=r"eval.reid.adapt_epochs = -1: Input should be greater than or equal to 0"):
        _params("eval.reid.adapt_epochs=-1")
    with pytest.raises(ParamsError, match=r"eval.reid.adapt_batch_size = 4 gives 3 negatives.*at least 5"):
        _params("eval.reid.adapt_batch_size=4")
    with pytest.raises(ParamsError, match=r"eval.reid.adapt_warmup_epochs = 3.0 > eval.reid.adapt_epochs = 2"):
        _params("eval.reid.adapt_warmup_epochs=3")
    _params("eval.reid.adapt_epochs=0", "eval.reid.adapt_batch_size=4")  # no adaptation: no constraint


def test_random_resize_keeps_the_aspect_of_portrait_views():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        out = random_resize(torch.rand(2, 3, 64, 32), 0.5, 0.9, gen)
        assert abs(out.shape[2] - 2 * out.shape[3]) <= 1 and 32 <= out.shape[2] <= 58  # up to rounding
    square = random_resize(torch.rand(2, 3, 32, 32), 0.5, 0.9, torch.Generator().manual_seed(0))
    assert square.shape[2] == square.shape[3]
