"""`python -m pipeline.bench methods`: the method switch it applies, and its figures on tiny in-memory batches
(the real run reads data/beton/)."""
from __future__ import annotations

import torch

from pipeline.bench.machine import with_overrides
from pipeline.bench.methods import measure, with_method
from pipeline.config import load_params


def test_with_method_switches_the_method_and_its_loss_and_keeps_the_rest():
    base = load_params()
    params = with_method(base, "simclr")
    assert (params.method, params.loss.name) == ("simclr", "nt_xent")
    assert params.train == base.train and params.model == base.model


def test_measure_reports_speed_flops_and_the_ratio_to_the_triplet_per_method():
    params = with_overrides(load_params(), {"train.batch_size": 12, "train.device": "cpu", "model.projector_hidden": 64,
                                            "model.predictor_hidden": 64})
    gen = torch.Generator().manual_seed(0)
    pair = [(torch.randn(12, 3, 32, 32, generator=gen), torch.randn(12, 3, 32, 32, generator=gen),
             torch.arange(12) % 3)]
    patches = [(*pair[0], tuple(torch.randn(12, 3, 32, 32, generator=gen) for _ in range(4)))]  # 6 per image
    methods = ["triplet", "simclr", "emp_ssl"]
    result = measure(params, {"triplet": pair, "simclr": pair, "emp_ssl": patches}, methods, steps=1, warmup=0,
                     rounds=1)
    assert result["triplet"]["img_s_vs_triplet"] == 1.0
    for method in methods:
        assert result[method]["img_s"] > 0 and result[method]["gflop_per_image"] > 0
    assert [result[m]["views_per_image"] for m in methods] == [2, 2, 6]
    # The triplet also runs the EMA target's forward pass: more FLOPs per image than SimCLR's one network;
    # EMP-SSL's six patches cost about three times SimCLR's two views.
    assert result["triplet"]["gflop_per_image"] > result["simclr"]["gflop_per_image"]
    assert 2.5 < result["emp_ssl"]["gflop_per_image"] / result["simclr"]["gflop_per_image"] < 3.5
