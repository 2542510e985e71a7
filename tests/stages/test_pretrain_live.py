"""DVCLive's files of the pretrain stage after a kill: no summary left holding a dead run's values.

data/pretrain/live/metrics.json (DVCLive's summary) is tracked by git, next to the curves of
live/plots/metrics/. A run killed mid-way must not leave them showing its partial values (or the previous
run's, whose metrics.json and curves DVC deleted before the run); the resumed run publishes the complete ones,
identical to an uninterrupted run's. Simulated here with the stage's own start and end functions.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.stages import pretrain
from pipeline.train.loop import log_to_live

LIVE = Path("data/pretrain/live")
ROWS = [{"epoch": e, "optimizer_steps": 6 * e, "loss": 10.0 / e, "lr": 0.1 * e, "knn_top1": 0.2 + 0.1 * e} for e in (1, 2, 3)]


def _published(root: Path) -> dict[str, str]:
    live = root / LIVE
    return {p.relative_to(live).as_posix(): p.read_text() for p in sorted(live.rglob("*")) if p.is_file()}


def _finish(history: list[dict], remaining: list[dict]) -> None:
    """What a run does from its start to a normal end: replay the history, log the rest, end and publish."""
    live = pretrain._live(history)
    for row in remaining:
        log_to_live(live, row)
    live.end()
    pretrain._publish_live()


@pytest.fixture
def uninterrupted(tmp_path, monkeypatch) -> dict[str, str]:
    root = tmp_path / "full"
    root.mkdir()
    monkeypatch.chdir(root)
    _finish([], ROWS)
    return _published(root)


def test_uninterrupted_run_publishes_summary_and_curves(uninterrupted):
    summary = json.loads(uninterrupted["metrics.json"])
    assert summary["loss"] == ROWS[-1]["loss"] and summary["knn_top1"] == ROWS[-1]["knn_top1"]
    assert len(uninterrupted["plots/metrics/knn_top1.tsv"].strip().splitlines()) == 1 + len(ROWS)


def test_killed_run_leaves_no_stale_summary_and_the_resumed_run_publishes_the_complete_one(
        uninterrupted, tmp_path, monkeypatch):
    project = tmp_path / "killed"
    project.mkdir()
    monkeypatch.chdir(project)
    # The previous complete run's published files (DVC deletes plots/metrics before re-running the stage;
    # the summary, not a DVC output, stays).
    (LIVE / "plots/metrics").mkdir(parents=True)
    (LIVE / "metrics.json").write_text(json.dumps({"step": 99, "loss": 123.0, "knn_top1": 0.9}))
    # A run resumed from the epoch-1 checkpoint logs epoch 2, then is killed (no end, nothing published).
    live = pretrain._live(ROWS[:1])
    log_to_live(live, ROWS[1])
    del live
    assert not (LIVE / "metrics.json").exists(), "a killed run left a DVCLive summary that looks current"
    assert not LIVE.exists()
    # The next run resumes from the epoch-2 checkpoint and finishes.
    _finish(ROWS[:2], ROWS[2:])
    assert _published(project) == uninterrupted
    assert not pretrain.LIVE_WORK.exists()
