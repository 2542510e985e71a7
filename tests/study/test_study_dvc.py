"""The study for real: two tiny runs as DVC experiments on a fresh project copy, then the report.

Slow (about a minute and a half on 2 cores): a copy of the session's small reproduced project (shrunk
dataset), committed, then `python -m pipeline.study run` and `report` as a user runs them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from small_project import BIN, copy_project, git_commit, sh

pytestmark = pytest.mark.slow
# 2 epochs: the copied project's own pretrain (the triplet default at 1 epoch) must not satisfy a study run.
TINY = ["--losses", "triplet,byol", "--seeds", "1", "--ks", "", "--worlds", "embedded", "--epochs", "2"]


@pytest.fixture(scope="module")
def project(built_small_project, tmp_path_factory) -> Path:
    root = copy_project(built_small_project, tmp_path_factory.mktemp("study") / "project")
    git_commit(root, "reproduced")  # queued experiments start from a commit's dvc.lock
    return root


def _study(project: Path, *args: str, check: bool = True):
    return sh(project, str(BIN / "python"), "-m", "pipeline.study", *args, check=check, timeout=900)


def test_runs_are_recorded_by_dvc_running_pretrain_only_and_the_report_reads_them(project):
    out = _study(project, "run", *TINY).stdout
    for name in ("eff-embedded-triplet-s0", "eff-embedded-byol-s0"):
        # In the temporary copy: generate rebuilds the uncached embedded data (byte-identical, so validate
        # and convert stay cached), scan is the always-run folder listing, then pretrain.
        assert f"{name}: done (stages run: generate, scan, pretrain)" in out, out
    assert "Running stage 'linear_eval'" not in out and "Running stage 'validate'" not in out
    assert "params.yaml" not in sh(project, "git", "status", "--porcelain").stdout, "the workspace is untouched"

    shown = json.loads(sh(project, "dvc", "exp", "show", "--json").stdout)
    runs = {r["name"]: r for base in shown for e in (base.get("experiments") or []) for r in e["revs"]}
    assert set(runs) == {"eff-embedded-triplet-s0", "eff-embedded-byol-s0"}
    byol = runs["eff-embedded-byol-s0"]["data"]
    assert byol["params"]["params.yaml"]["data"]["loss"]["name"] == "byol"
    assert byol["params"]["params.yaml"]["data"]["train"]["epochs"] == 2
    assert "fn_hardest" in byol["metrics"]["data/pretrain/metrics.json"]["data"], "every loss logs fn_hardest"

    again = _study(project, "run", *TINY).stdout  # an interrupted study resumes: nothing left to run
    assert again.count("already recorded") == 2 and "dvc exp run" not in again

    clash = _study(project, "run", *TINY[:-1], "3", "--dry-run", check=False)
    assert clash.returncode == 1 and "eff-embedded-byol-s0: train.epochs = 2 (expected 3)" in clash.stderr

    _study(project, "report", *TINY)
    md = (project / "reports/efficiency.md").read_text()
    for rev in (runs["eff-embedded-triplet-s0"]["rev"], runs["eff-embedded-byol-s0"]["rev"]):
        assert f"`{rev[:7]}`" in md
    knn = runs["eff-embedded-byol-s0"]["data"]["metrics"]["data/pretrain/metrics.json"]["data"]["knn_top1"]
    assert f"| eff-embedded-byol-s0 | `{runs['eff-embedded-byol-s0']['rev'][:7]}` | embedded | byol | 0 | 2 |" in md
    assert f"{100 * knn:.1f}" in md
    # one seed: no spread, no verdict, at equal epochs and at equal training seconds
    assert re.search(r"\| `embedded` \| 10 \| 1\.5 \| \*\*not established\*\* \| \*\*not established\*\* \|", md), md
    assert (project / "reports/efficiency_embedded_curves.png").stat().st_size > 5000


def test_report_of_the_full_study_refuses_naming_the_missing_runs(project):
    proc = _study(project, "report", "--out", "reports-full", check=False)
    assert proc.returncode == 1
    assert re.search(r"4[35] of the study.s 45 runs are not recorded", proc.stderr), proc.stderr
    assert "eff-embedded_many-emp_ssl-s2" in proc.stderr and "python -m pipeline.study run" in proc.stderr
    assert not (project / "reports-full").exists()


def test_a_failing_run_is_named_and_the_study_exits_1(project):
    proc = _study(project, "run", "--losses", "byol", "--seeds", "1", "--worlds", "embedded", "--epochs", "1",
                  "--prefix", "bad", "-S", "train.lr=-1", check=False)
    assert proc.returncode == 1
    assert "bad-embedded-byol-s0: FAILED" in proc.stdout and "train.lr = -1" in proc.stdout
    assert "1 run(s) failed: bad-embedded-byol-s0" in proc.stderr
