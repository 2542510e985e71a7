"""`python -m pipeline.bench step_profile`: operator kinds and their shares (the run itself needs data/beton/)."""
from __future__ import annotations

import pytest

from pipeline.bench.step_profile import _Timed, kind_of, shares_by_kind


@pytest.mark.parametrize("name, kind", [("aten::mkldnn_convolution", "convolution"),
                                        ("aten::convolution_backward", "convolution"), ("aten::mm", "gemm"),
                                        ("aten::addmm", "gemm"), ("aten::bmm", "gemm"),
                                        ("aten::native_batch_norm_backward", "batch_norm"),
                                        ("aten::_foreach_add_", "foreach"), ("aten::relu_", "other"),
                                        ("aten::max_pool2d_with_indices", "other")])
def test_kind_of(name, kind):
    assert kind_of(name) == kind


def test_shares_cover_every_kind_and_sum_to_one():
    shares = shares_by_kind({"aten::mkldnn_convolution": 60.0, "aten::mm": 10.0, "aten::relu_": 30.0})
    assert shares == {"convolution": 0.6, "gemm": 0.1, "batch_norm": 0.0, "foreach": 0.0, "other": 0.3}
    assert shares_by_kind({})["other"] == 0.0


def test_timed_adds_time_even_when_the_call_raises():
    seconds = {"x": 0.0}
    timed = _Timed(lambda v: 1 / v, seconds, "x")
    assert timed(2) == 0.5
    with pytest.raises(ZeroDivisionError):
        timed(0)
    assert seconds["x"] > 0
