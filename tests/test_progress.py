"""Progress output: a bar on a terminal, and off a terminal (pipes, CI, Prefect's logs) a log line with the
count, rate and ETA at least every PIPELINE_PROGRESS_EVERY seconds, so long work is never silent."""
from __future__ import annotations

import logging
import math

import pytest
import torch

from in_memory import InMemoryLoader
from pipeline import progress
from pipeline.config import compose, validate_params
from pipeline.progress import progress_line, track
from pipeline.train.distributed import DistInfo
from pipeline.train.loop import Pretrainer


def _tiny_run(*overrides: str):
    """Params of a small CPU model and a loader of two identical batches of 12 random two-view images."""
    params = validate_params(compose(["train.batch_size=12", "train.device=cpu", "model.projector_hidden=64",
                                      "model.projector_out=32", "model.predictor_hidden=64", *overrides]))
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(12, 3, 32, 32, generator=gen), torch.randn(12, 3, 32, 32, generator=gen),
             torch.arange(12) % 3)
    return params, InMemoryLoader([batch, batch])


@pytest.fixture
def off_terminal(monkeypatch):
    monkeypatch.setattr(progress, "show_progress", lambda: False)


def test_off_a_terminal_a_line_is_logged_once_the_interval_has_passed(off_terminal, monkeypatch, caplog):
    monkeypatch.setenv(progress.ENV_EVERY, "0")
    with caplog.at_level(logging.INFO, logger="pipeline"):
        assert list(track(range(4), "epoch 1/2", unit="batches")) == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[0].startswith("epoch 1/2: 1/4 batches (25%), ") and "batches/s, ETA " in lines[0]
    assert lines[-1].startswith("epoch 1/2: 4/4 batches (100%)")


def test_no_line_before_the_interval_and_none_from_a_disabled_rank(off_terminal, monkeypatch, caplog):
    monkeypatch.setenv(progress.ENV_EVERY, "3600")
    with caplog.at_level(logging.INFO, logger="pipeline"):
        assert list(track(iter(range(5)), "features")) == list(range(5))
        monkeypatch.setenv(progress.ENV_EVERY, "0")
        assert list(track(range(3), "rank 1", enabled=False)) == [0, 1, 2]
    assert caplog.records == []


def test_the_interval_defaults_to_30_seconds_and_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.delenv(progress.ENV_EVERY, raising=False)
    assert progress.every_s() == 30.0
    monkeypatch.setenv(progress.ENV_EVERY, "soon")
    with pytest.raises(ValueError, match="PIPELINE_PROGRESS_EVERY='soon': expected a number"):
        progress.every_s()
    monkeypatch.setenv(progress.ENV_EVERY, "nan")
    with pytest.raises(ValueError, match="expected a finite number of seconds"):
        progress.every_s()


def test_progress_line_states_rate_and_eta_and_copes_without_a_total():
    assert progress_line("coco", 50, 200, 25.0, "iterations") == \
        "coco: 50/200 iterations (25%), 2.00 iterations/s, ETA 1m15s"
    assert progress_line("scan", 7, None, 2.0, "files") == "scan: 7 files, 3.50 files/s"


def test_pretraining_off_a_terminal_reports_steps_announces_the_monitor_and_records_train_seconds(
        off_terminal, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv(progress.ENV_EVERY, "0")
    params, loader = _tiny_run("train.epochs=2")
    calls = []

    def monitor(backbone):
        calls.append(1)
        return {"knn_top1": 0.5}

    trainer = Pretrainer(params, tmp_path, loader, DistInfo(), torch.device("cpu"),
                         monitor=monitor)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        state = trainer.fit()
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("epoch 2/2: 2/2 batches (100%)") for line in lines)
    assert sum("monitor (" in line for line in lines) == len(calls) == 3  # random init + 2 epochs
    assert [h["optimizer_steps"] for h in state.history] == [2, 4]
    seconds = [h["train_seconds"] for h in state.history]
    assert 0 < seconds[0] < seconds[1] and all(math.isfinite(s) for s in seconds)
    assert "step" not in state.history[0]  # DVCLive's own step column is the x axis


def test_a_budget_in_steps_derives_the_epochs_and_stops_part_way_through_the_last(tmp_path):
    from types import SimpleNamespace

    from pipeline.train.schedule import Budget

    b = Budget(SimpleNamespace(steps=100, epochs=15, warmup_steps=None, warmup_epochs=1.5), 39)
    assert (b.total_steps, b.epochs, b.warmup_steps) == (100, 3, 58)
    assert [b.steps_in_epoch(e) for e in range(3)] == [39, 39, 22]
    assert b.describe() == "100 steps = 3 epoch(s) of 39 (train.steps), warm-up 58 steps"
    e = Budget(SimpleNamespace(steps=None, epochs=15, warmup_steps=20, warmup_epochs=1.5), 39)
    assert (e.total_steps, e.epochs, e.warmup_steps) == (585, 15, 20)
    # the supervised reference: one batch per step, train.accumulate batches per pretraining step
    s = Budget(SimpleNamespace(steps=100, epochs=15, warmup_steps=10, warmup_epochs=1.5), 78, step_scale=2)
    assert (s.total_steps, s.warmup_steps, s.epochs) == (200, 20, 3)
    assert b.warning is None and e.warning is None
    long = Budget(SimpleNamespace(steps=600, epochs=15, warmup_steps=None, warmup_epochs=1.5), 780)
    assert long.warning.startswith("the warm-up (1170 steps, from train.warmup_epochs = 1.5 epochs of 780 steps) "
                                   "does not fit in the budget of 600 steps")

    params, loader = _tiny_run("train.steps=3")
    state = Pretrainer(params, tmp_path, loader, DistInfo(), torch.device("cpu")).fit()
    assert state.step == 3 and state.epoch == 2 and [h["optimizer_steps"] for h in state.history] == [2, 3]


def test_headline_keeps_matching_scalars_nested_and_rounded_and_leaves_lists_out():
    from pipeline.stages._common import headline

    full = {"pretrained": {"top1": 0.7909999887, "top1_sd": 0.003, "per_seed": {"top1": [0.79, 0.8]}},
            "verdicts": {"pretrained_vs_random_init": {"top1": {"verdict": "ahead", "se": 0.01}}},
            "protocol": {"lr": 0.1}, "status": "measured"}
    assert headline(full, ("*.top1", "verdicts.*.top1.verdict", "status")) == {
        "pretrained": {"top1": 0.791}, "status": "measured",
        "verdicts": {"pretrained_vs_random_init": {"top1": {"verdict": "ahead"}}}}
