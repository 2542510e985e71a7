"""`python -m pipeline.bench loader`: the dispatcher, and the comparison on a tiny set."""
from __future__ import annotations

import pytest
import torch

from pipeline.bench.__main__ import available, main


def test_dispatcher_lists_and_refuses(capsys):
    assert "loader" in available() and "torchvision_ssl" not in available()
    assert main([]) == 2
    assert main(["no_such_bench"]) == 2
    assert "unknown benchmark 'no_such_bench'" in capsys.readouterr().err


def test_compare_reports_both_loaders(tiny):
    from pipeline.bench.loader import compare

    r = compare(tiny.train, tiny.root / "train", size=16, batch_size=8, workers=1, rounds=1, seed=0,
                device=torch.device("cpu"))
    assert r["images"] == 32 and r["ffcv_img_s"] > 0 and r["torchvision_img_s"] > 0
    assert r["ratio"] == pytest.approx(r["ffcv_img_s"] / r["torchvision_img_s"], rel=0.01)
