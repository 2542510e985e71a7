"""`python -m pipeline.bench budget`: its override parsing and gain table (the run itself needs data/beton/)."""
from __future__ import annotations

import pytest

from pipeline.bench.budget import gains, parse_overrides
from pipeline.bench.machine import with_overrides
from pipeline.config import ParamsError, load_params


def test_overrides_become_python_values_and_validate_like_params():
    parsed = parse_overrides(["train.epochs=5", "convert.loader.crop_scale=[0.5,1.0]", "loss.margin=3.0"])
    assert parsed == {"train.epochs": 5, "convert.loader.crop_scale": [0.5, 1.0], "loss.margin": 3.0}
    params = with_overrides(load_params(), parsed)
    assert params.train.epochs == 5 and tuple(params.convert.loader.crop_scale) == (0.5, 1.0)
    with pytest.raises(ParamsError, match="method = 'triplet' trains with loss.name = 'truncated_triplet'"):
        with_overrides(load_params(), parse_overrides(["loss.name=infonce"]))  # a loss without its method
    with pytest.raises(ParamsError, match="epochs"):
        with_overrides(load_params(), parse_overrides(["train.epochs=0"]))


def test_an_override_without_a_value_is_refused_by_name():
    with pytest.raises(ValueError, match="'train.epochs'"):
        parse_overrides(["train.epochs"])


def test_gains_are_points_over_random_init_and_none_where_not_monitored():
    history = [{"knn_top1": 0.30}, {}, {"knn_top1": 0.61}]
    assert gains(history, {"knn_top1": 0.377}, "knn_top1") == [-7.7, None, 23.3]
