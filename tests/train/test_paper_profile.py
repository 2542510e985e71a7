"""The paper profile (data=imagenet model=resnet50 train=paper) composes, validates, and takes one real
optimisation step of the Pretrainer on tiny CPU inputs (bf16 autocast, channels_last, LARS, accumulation)."""
from __future__ import annotations

import math

import pytest
import torch

from in_memory import InMemoryLoader
from pipeline.config import compose, validate_params
from pipeline.train.distributed import DistInfo
from pipeline.train.loop import Pretrainer

PAPER = ["data=imagenet", "model=resnet50", "train=paper"]


@pytest.mark.parametrize("data", ["imagenet", "imagenet100"])
def test_paper_profile_composes_to_the_method(data):
    p = validate_params(compose([f"data={data}", "model=resnet50", "train=paper"]))
    assert (p.model.arch, p.model.projector_hidden, p.model.projector_out, p.model.predictor_hidden) == \
        ("resnet50", 4096, 256, 4096)
    t = p.train
    assert (t.image_size, t.optimizer, t.lr, t.warmup_epochs, t.precision, t.channels_last) == \
        (224, "lars", 4.8, 10, "bf16", True)
    assert t.batch_size * 8 * t.accumulate == 4096  # per GPU x 8 GPUs x accumulation = the official batch
    assert (p.loss.name, p.loss.variant, p.loss.k, p.loss.k_end) == ("truncated_triplet", "smoothed", 2, 10)
    assert p.data.classification.root.startswith("/datasets/")


def test_paper_profile_takes_one_optimisation_step_on_cpu(tmp_path):
    # Only what cannot run on a CPU test is shrunk: 32 px views, 12 images per micro-batch (11 negatives,
    # enough for ranks 2..10), cpu. ResNet-50, the 4096-wide heads, LARS, bf16, channels_last and the
    # two-micro-batch accumulation are the profile's own.
    raw = compose(PAPER + ["train.image_size=32", "train.batch_size=12", "train.device=cpu"])
    params = validate_params(raw)
    assert params.train.accumulate == 2
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    micro = [(torch.randn(12, 3, 32, 32, generator=gen), torch.randn(12, 3, 32, 32, generator=gen),
              torch.arange(12) % 3) for _ in range(params.train.accumulate)]
    trainer = Pretrainer(params, tmp_path, InMemoryLoader(micro), DistInfo(), torch.device("cpu"))
    assert trainer.steps_per_epoch == 1
    w0 = trainer.model.backbone.conv1.weight.detach().clone()
    t0 = trainer.model.target_backbone.conv1.weight.detach().clone()
    assert trainer.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    sums = {"loss": 0.0, "n": 0}
    for i, batch in enumerate(micro):
        trainer._step(batch, i, sums)
    assert trainer.state.step == 1, "two micro-batches make one optimizer step"
    assert sums["n"] == 2 and math.isfinite(sums["loss"])
    # Symmetrised loss with margin 100: about 2 x (100 - 4 s_ap + 2 s_an), so near 200 at random init.
    assert 150 < sums["loss"] / sums["n"] < 250
    assert 0.0 <= sums["fn_selected"] / 2 <= 1.0 and 0.0 <= sums["fn_hardest"] / 2 <= 1.0
    assert not torch.equal(trainer.model.backbone.conv1.weight, w0), "the online network must move"
    assert not torch.equal(trainer.model.target_backbone.conv1.weight, t0), "the EMA target must follow"
    # First step of the 10-epoch warm-up (1 step/epoch here): the lr starts near 0, far below 4.8.
    assert 0 <= sums["lr"] < 4.8
