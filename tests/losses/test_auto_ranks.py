"""`loss.k: auto`: deputy ranks that step over the expected same-class negatives, (pool - 1) / classes."""
from __future__ import annotations

import pytest

from pipeline.config import compose, validate_params
from pipeline.losses.truncated_triplet import auto_ranks, expected_false_negatives


def test_paper_regime_gives_the_official_window_and_few_classes_move_it():
    assert expected_false_negatives(128, 10) == pytest.approx(12.7)
    assert auto_ranks(256, 1000) == (2, 10)    # the paper: m = 0.26, the official 2..10
    assert auto_ranks(128, 144) == (2, 10)     # the many-class embedded world: m = 0.88
    assert auto_ranks(128, 10) == (14, 22)     # the 10-class default: m = 12.7, ranks 1..13 skipped
    assert auto_ranks(128, 127) == (2, 10)     # m = 1 exactly: rank 1 holds it
    assert auto_ranks(128, 126) == (3, 11)     # m just above 1: two ranks skipped
    assert auto_ranks(8, 2) == (5, 7)          # capped at the pool's 7 negatives
    assert auto_ranks(2, 2) == (1, 1)          # one negative: the only rank there is
    with pytest.raises(ValueError, match="no negatives"):
        auto_ranks(1, 10)


def test_config_resolves_auto_and_needs_the_class_count():
    p = validate_params(compose(["loss.k=auto"]))
    assert p.data.num_classes == 10  # the embedded data's generate.classification.classes
    assert p.loss.ranks(128, 10) == (14, 22)  # the configured k_end 10 lies below k: the window moves
    assert validate_params(compose(["loss.k=auto", "loss.k_end=30"])).loss.ranks(128, 10) == (14, 30)
    assert validate_params(compose(["loss.k_end=auto"])).loss.ranks(128, 10) == (2, 22)
    assert validate_params(compose(["data=embedded_many", "loss.k=auto"])).loss.ranks(128, 144) == (2, 10)
    assert validate_params(compose(["loss.k=3"])).loss.ranks(128, 10) == (3, 10)  # explicit ranks as given
    with pytest.raises(ValueError, match=r"need data.num_classes .*-S data.num_classes=<n>"):
        validate_params(compose(["loss.k=auto", "data.num_classes=null"]))
    with pytest.raises(ValueError, match="loss.k"):
        validate_params(compose(["loss.k=sometimes"]))
