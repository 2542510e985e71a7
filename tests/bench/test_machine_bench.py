"""`python -m pipeline.bench machine`: FLOP counting against known figures, and every figure on tiny inputs.

The benchmark itself reads data/beton/ and the coco data; here its steps run on in-memory batches and a
generated COCO set, so the test needs no pipeline data (a clean checkout has none).
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from pipeline.bench import machine
from pipeline.bench.__main__ import available
from pipeline.config import ParamsError, compose, validate_params
from pipeline.data.generate_coco import generate_coco
from pipeline.evaluation.coco_data import load_split
from pipeline.models import build_backbone

SMALL = ["model.projector_hidden=32", "model.projector_out=16", "model.predictor_hidden=32", "loss.k_end=4",
         "train.batch_size=8", "train.image_size=32", "train.device=cpu", "eval.linear.batch_size=8",
         "eval.reid.batch_size=4", "eval.reid.height=64", "eval.reid.width=32", "eval.coco.batch_size=2",
         "eval.coco.train_sizes=[48,64]", "eval.coco.test_size=64", "eval.coco.fpn_channels=16",
         "eval.coco.num_workers=0"]
COCO_CFG = {"train_images": 4, "val_images": 2, "min_size": 48, "max_size": 64, "max_objects": 2,
            "jpeg_quality": 90}


def _conv_flops_by_hand(model: nn.Module, x: torch.Tensor) -> int:
    """2 * MACs of every convolution and linear layer, from their shapes (forward hooks)."""
    total = []

    def conv(m, _, out):
        total.append(2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])

    def linear(m, _, out):
        total.append(2 * out.numel() * m.in_features)

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return sum(total)


def test_registered_with_the_dispatcher():
    assert "machine" in available()


def test_forward_flops_match_known_figures():
    torch.manual_seed(0)
    net, _ = build_backbone("resnet18", "imagenet")
    net.eval()

    def forward(x):
        with torch.no_grad():
            return net(x)

    # torchvision's published cost of resnet18 at 224 px: 1.814 GMACs (its fc, 0.0005 G, is Identity here).
    _, flops = machine.count_flops(forward, torch.rand(1, 3, 224, 224))
    assert flops == pytest.approx(2 * torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["_ops"] * 1e9, rel=0.01)
    # At the embedded 32 px, batch 4: the same as the shapes give by hand.
    x = torch.rand(4, 3, 32, 32)
    _, flops = machine.count_flops(forward, x)
    assert flops == pytest.approx(_conv_flops_by_hand(net, x), rel=0.1)
    assert flops == pytest.approx(4 * 74_022_912, rel=0.01)


def test_peak_and_figures():
    assert machine.matmul_peak(128, reps=1, rounds=1) > 0
    f = machine.figures("x", flops=4e9, flop_images=2, img_s=10.0, peak_gflop_s=100.0)
    assert f == {"x_gflop_per_image": 2.0, "x_img_s": 10.0, "x_gflop_s": 20.0, "x_efficiency": 0.2}
    assert machine.cpu_model()


def test_every_step_on_tiny_inputs(tmp_path):
    params = validate_params(compose(SMALL))
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen)

    labels = torch.arange(8) % 4
    sources = machine.Sources(
        pretrain=[(rand(8, 3, 32, 32), rand(8, 3, 32, 32), labels) for _ in range(2)],
        eval=[(rand(8, 3, 32, 32), labels) for _ in range(2)],
        reid=[(rand(4, 3, 64, 32), torch.arange(4), torch.ones(4, dtype=torch.int64),
               torch.zeros(4, dtype=torch.int64))],
        detection=load_split(generate_root(tmp_path), "train2017", train=True))
    threads = torch.get_num_threads()
    try:
        result = machine.run(params, sources, torch.device("cpu"), steps=2, warmup=1, reid_steps=1,
                             detection_steps=1, peak_size=256)
    finally:
        torch.set_num_threads(threads)
    for key in ("cpu_model", "cores", "torch_threads", "peak_gflop_s", "load_avg_1min"):
        assert key in result, key
    assert result["peak_gflop_s"] > 0
    for prefix in ("pretrain", "eval", "reid", "detection"):
        assert result[f"{prefix}_gflop_per_image"] > 0 and result[f"{prefix}_img_s"] > 0, prefix
        assert 0 < result[f"{prefix}_efficiency"] <= 1.5, (prefix, result)
        assert result[f"{prefix}_gflop_s"] == pytest.approx(
            result[f"{prefix}_gflop_per_image"] * result[f"{prefix}_img_s"], rel=0.02, abs=0.01)
    # One pretraining step counts two views through online forward + backward (about 3 forwards each) and
    # through the target: close to 8 backbone forwards per image; the eval extraction is 1, reid's 2 (flip).
    ratio = result["pretrain_gflop_per_image"] / result["eval_gflop_per_image"]
    assert 6 < ratio < 9, ratio
    assert result["reid_gflop_per_image"] == pytest.approx(2 * 2 * result["eval_gflop_per_image"], rel=0.05)


def generate_root(tmp_path):
    root = tmp_path / "coco"
    generate_coco(root, COCO_CFG, seed=3, classes=["circle", "square"])
    return root


def test_before_overrides_give_the_pre_redesign_default_and_nothing_else():
    params = validate_params(compose(SMALL))
    old = machine.with_overrides(params, machine.BEFORE)
    assert (old.train.batch_size, old.train.image_size) == (128, 32)
    assert (old.eval.reid.height, old.eval.reid.width, old.eval.coco.test_size) == (256, 128, 128)
    untouched = {k: v for k, v in old.model_dump().items() if k not in ("train", "eval")}
    assert untouched == {k: v for k, v in params.model_dump().items() if k not in ("train", "eval")}
    with pytest.raises(ParamsError, match="train.batch_size"):
        machine.with_overrides(params, {"train.batch_size": 0})


def test_levers_time_every_variant_on_the_same_batches():
    from pipeline.bench import levers

    params = validate_params(compose(SMALL))
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(8) % 4
    cached = [(torch.randn(8, 3, 32, 32, generator=gen), torch.randn(8, 3, 32, 32, generator=gen), labels)
              for _ in range(2)]
    threads = torch.get_num_threads()
    try:
        result = levers.measure(params, cached, list(levers.VARIANTS), steps=1, warmup=1, rounds=1)
    finally:
        torch.set_num_threads(threads)
    for variant in levers.VARIANTS:
        assert result[f"{variant}_img_s"] > 0, variant
    assert result["plain_speedup"] == 1.0
