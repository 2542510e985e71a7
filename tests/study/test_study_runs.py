"""The study's experiment set: which runs, under which names and overrides, and how bad options fail."""
from __future__ import annotations

import pytest

from pipeline.study.runs import LOSSES, StudyError, StudySpec, dvc_args, mismatches


def test_default_study_is_five_losses_by_three_seeds_plus_five_ks_with_the_baseline_shared():
    points, runs = StudySpec().plan()
    assert len(points) == 5 * 3 + 5 == 20
    assert len(runs) == 19, "the k = 2 point is the reference loss at seed 0: one run, not two"
    by_point = {(p.kind, p.label, p.seed): p.run for p in points}
    assert by_point[("k", "2", 0)] == by_point[("loss", "triplet", 0)] == "eff-triplet-s0"
    assert {p.label for p in points if p.kind == "loss"} == set(LOSSES) == \
        {"triplet", "median", "hardest", "byol", "infonce"}
    assert sorted(int(p.label) for p in points if p.kind == "k") == [1, 2, 3, 5, 10]
    assert {p.seed for p in points if p.kind == "loss"} == {0, 1, 2}
    names = [r.name for r in runs]
    assert len(set(names)) == 19 and "eff-byol-s2" in names and "eff-k10-s0" in names and "eff-k2-s0" not in names


def test_runs_carry_their_overrides_and_the_params_they_must_record():
    _, runs = StudySpec(epochs=6).plan()
    run = {r.name: r for r in runs}
    assert run["eff-median-s1"].overrides == ("loss=median", "seed=1", "train.epochs=6", "train.monitor_every=1")
    assert run["eff-k5-s0"].overrides == ("loss=truncated_triplet", "loss.k=5", "seed=0", "train.epochs=6",
                                          "train.monitor_every=1")
    assert run["eff-k5-s0"].expect == {"loss.name": "truncated_triplet", "loss.variant": "smoothed", "loss.k": 5,
                                       "seed": 0, "train.epochs": 6}
    # Only pretrain (and what it depends on) is reproduced, in a temporary copy, under the run's name.
    assert dvc_args(run["eff-median-s1"]) == ["exp", "run", "--temp", "-n", "eff-median-s1", "-S", "loss=median",
                                             "-S", "seed=1", "-S", "train.epochs=6", "-S", "train.monitor_every=1",
                                             "pretrain"]


def test_subsets_and_extra_overrides():
    spec = StudySpec.from_args("triplet,byol", 1, "", 2, ["train.lr=0.5"], "tiny")
    points, runs = spec.plan()
    assert [r.name for r in runs] == ["tiny-triplet-s0", "tiny-byol-s0"] and len(points) == 2
    assert runs[1].overrides[-1] == "train.lr=0.5" and runs[1].expect["train.lr"] == 0.5
    # Without the reference loss, k = 2 gets a run of its own.
    _, runs = StudySpec(losses=("byol",), seeds=(0,), ks=(2,)).plan()
    assert [r.name for r in runs] == ["eff-byol-s0", "eff-k2-s0"]


@pytest.mark.parametrize("kwargs, message", [
    ({"losses": ("triplet", "simclr")}, "simclr"),
    ({"seeds": ()}, "at least one seed"),
    ({"ks": (0, 2)}, "k must be >= 1"),
    ({"epochs": 0}, "epochs = 0"),
    ({"extra": ("seed=3",)}, "-S seed=3"),
    ({"extra": ("train.lr",)}, "expected key=value"),
    ({"prefix": "a b"}, "prefix"),
])
def test_bad_options_are_refused_naming_the_value(kwargs, message):
    with pytest.raises(StudyError, match=message):
        StudySpec(**kwargs)


def test_ks_must_be_integers():
    with pytest.raises(StudyError, match="ks = '1,two'"):
        StudySpec.from_args(None, None, "1,two", None, None, "eff")


def test_mismatches_name_the_key_and_both_values():
    params = {"seed": 1, "loss": {"name": "byol"}, "train": {"epochs": 4}}
    assert mismatches(params, {"seed": 1, "loss.name": "byol", "train.epochs": 4}) == []
    assert mismatches(params, {"train.epochs": 6, "loss.k": 2}) == [
        "train.epochs = 4 (expected 6)", "loss.k missing (expected 2)"]
