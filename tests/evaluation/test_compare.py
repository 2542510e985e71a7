"""Comparing backbones: paired verdicts beyond two standard errors, the supervised share, metrics blocks."""
from __future__ import annotations

import math

import pytest

from pipeline.evaluation.compare import backbone_block, compare, paired_verdict, supervised_share


def test_a_consistent_lead_is_ahead_and_a_noisy_one_within_spread():
    ahead = paired_verdict([0.50, 0.52, 0.51], [0.40, 0.41, 0.43])
    assert ahead["verdict"] == "ahead" and ahead["difference"] == pytest.approx(0.0967, abs=1e-4)
    # differences 0.1, 0.11, 0.08: sd 0.01528, two standard errors 2 * 0.01528 / sqrt(3)
    assert ahead["two_se"] == pytest.approx(2 * 0.015275 / math.sqrt(3), rel=1e-3)
    assert paired_verdict([0.40, 0.41, 0.43], [0.50, 0.52, 0.51])["verdict"] == "behind"
    noisy = paired_verdict([0.5, 0.3, 0.6], [0.4, 0.5, 0.4])   # differences 0.1, -0.2, 0.2
    assert noisy["verdict"] == "within spread"


def test_one_seed_establishes_nothing_and_mismatched_runs_are_refused():
    assert paired_verdict([0.9], [0.1]) == {"difference": pytest.approx(0.8), "two_se": None,
                                            "verdict": "not established", "n": 1}
    with pytest.raises(ValueError, match="2 and 3 values"):
        paired_verdict([0.1, 0.2], [0.1, 0.2, 0.3])


def test_identical_runs_are_within_spread_not_ahead():
    assert paired_verdict([0.3, 0.3], [0.3, 0.3])["verdict"] == "within spread"


def test_supervised_share_is_the_part_of_the_supervised_gain_recovered():
    assert supervised_share(0.2, 0.5, 0.8) == pytest.approx(0.5)
    assert supervised_share(0.2, 0.9, 0.8) == pytest.approx(7 / 6)
    assert supervised_share(0.2, 0.5, 0.2) is None  # no supervised gain: nothing to recover


def test_compare_pairs_seeds_or_the_given_items_and_blocks_keep_means_under_the_metric_name():
    per_seed = {"random_init": {"top1": [0.1, 0.12]}, "pretrained": {"top1": [0.3, 0.33]},
                "supervised": {"top1": [0.5, 0.49]}}
    out = compare(per_seed)
    assert out["verdicts"]["supervised_vs_random_init"]["top1"]["verdict"] == "ahead"
    assert out["verdicts"]["pretrained_vs_supervised"]["top1"]["verdict"] == "behind"
    assert out["supervised_share"]["top1"] == pytest.approx((0.315 - 0.11) / (0.495 - 0.11))
    per_query = {"random_init": {"top1": [0, 0, 1, 0]}, "pretrained": {"top1": [1, 1, 1, 0]},
                 "supervised": {"top1": [1, 0, 1, 1]}}
    single = {name: {"top1": [sum(v["top1"]) / 4]} for name, v in per_query.items()}
    out = compare(single, per_query)
    paired = out["verdicts"]["pretrained_vs_random_init"]["top1"]
    assert paired["n"] == 4 and paired["difference"] == pytest.approx(0.5)
    # The supervised reference is not ahead beyond two standard errors (2 of 4 queries better): no share.
    assert out["verdicts"]["supervised_vs_random_init"]["top1"]["verdict"] == "within spread"
    assert out["supervised_share"]["top1"] is None
    block = backbone_block({"top1": [0.3, 0.5]})
    assert block["top1"] == pytest.approx(0.4) and block["top1_sd"] == pytest.approx(math.sqrt(0.02))
    assert block["per_seed"] == {"top1": [0.3, 0.5]}
