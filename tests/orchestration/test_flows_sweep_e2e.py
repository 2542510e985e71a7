"""The Prefect sweep and the pipeline flow's failure handling against a real Prefect server on loopback, on a
small fresh copy of the project (tests/orchestration/conftest.py).

A sweep over an evaluation parameter (only that stage computes; table and plot published, workers
stopped); in make test-all also one over loss.k; a stage killed once is retried and a stage failing on its
own fails the flow with the stage named, no retry, and DVC left unlocked.
"""
from __future__ import annotations

import json

import pytest
from prefect_server import api, latest_artifact
from ruamel.yaml import YAML
from small_project import BIN, sh

from pipeline import dvc_cli

pytestmark = pytest.mark.slow


def test_sweep_of_an_evaluation_parameter_runs_the_queue_to_the_end_and_publishes(project, server):
    """The sweep's queue, polling, logs and artifacts in CI at the cost of one evaluation stage per experiment.

    (flows/sweep.py used to wait on `dvc exp run --run-all`, which could wait forever after both experiments
    had succeeded: treeverse/dvc#8165, #10398; docs/speed.md.)
    """
    url = server["PREFECT_API_URL"]
    metric = "data/reid/metrics.json:pretrained.mAP"
    proc = sh(project, str(BIN / "python"), "-m", "flows.sweep", "-S", "eval.reid.batch_size=4,8", "--metric", metric,
              extra_env=server, timeout=600)
    assert proc.returncode == 0
    table = latest_artifact(url, "ssl-sweep")["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert sorted(r["eval.reid.batch_size"] for r in rows) == ["4", "8"]
    for r in rows:
        assert r["status"] == "Success" and isinstance(r[metric], float)
        # Stage outcomes come from `dvc queue logs`: only the stage the parameter reaches computes.
        assert set(r["stages run"].split(", ")) == {"check_params", "generate", "scan", "reid_eval"}
        assert {"validate", "convert", "pretrain"} <= set(r["stages cached"].split(", "))
    assert len(list((project / "data/reports/sweeps").glob("*data_reid_metrics.json_pretrained.mAP.png"))) == 1
    status = sh(project, "dvc", "queue", "status").stdout
    assert "0 active" in status  # the sweep stopped its workers


# The full sweep over loss.k (pretraining and every evaluation twice): make test-all.
@pytest.mark.extended
def test_sweep_runs_only_pretrain_and_publishes_table_and_plot(project, server):
    url = server["PREFECT_API_URL"]
    proc = sh(project, str(BIN / "python"), "-m", "flows.sweep", "-S", "loss.k=1,3", "--metric", "knn_top1",
              extra_env=server, timeout=720)  # under pytest's 900 s, so the sweep's own output is shown
    assert proc.returncode == 0
    table = latest_artifact(url, "ssl-sweep")["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert sorted(r["loss.k"] for r in rows) == ["1", "3"]
    _, edges = dvc_cli.dag(project)
    after_pretrain = dvc_cli.downstream(edges, "pretrain")  # e.g. linear_eval, reid_eval
    for r in rows:
        assert r["status"] == "Success" and isinstance(r["knn_top1"], float)
        # A queued run works in a temporary copy: generate rebuilds the uncached embedded data there,
        # byte-identical, so the data stages after it stay cached.
        assert set(r["stages run"].split(", ")) == {"check_params", "generate", "scan", "pretrain"} | after_pretrain
        assert set(r["stages cached"].split(", ")) == {"validate", "convert"}
    pngs = list((project / "data/reports/sweeps").glob("*-knn_top1.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 1000
    shown = json.loads(sh(project, "dvc", "exp", "show", "--json").stdout)
    names = {run.get("name") for rev in shown for exp in (rev.get("experiments") or []) for run in exp["revs"]}
    assert {r["experiment"] for r in rows} <= names


def test_killed_stage_is_retried_and_a_failing_stage_fails_the_flow_named(project, server):
    url = server["PREFECT_API_URL"]
    lock_before = (project / "dvc.lock").read_text()
    yaml = YAML()
    dvc_yaml = yaml.load(project / "dvc.yaml")
    # Stages added to dvc.yaml are picked up by the flow without any code change.
    dvc_yaml["stages"]["flaky"] = {  # killed by SIGKILL on its first attempt (a transient failure)
        "cmd": "python -c \"import os, pathlib, signal; m = pathlib.Path('data/flaky.marker'); first = not "
               "m.exists(); m.touch(); first and os.kill(os.getpid(), signal.SIGKILL); "
               "pathlib.Path('data/flaky.txt').write_text('ok')\"",
        "deps": ["data/pretrain/backbone.pt"], "outs": ["data/flaky.txt"]}
    dvc_yaml["stages"]["broken"] = {  # fails on its own: not retried
        "cmd": "python -c \"import sys; print('[broken] error: backbone rejected', file=sys.stderr); sys.exit(1)\"",
        "deps": ["data/flaky.txt"], "outs": ["data/broken.txt"]}
    yaml.dump(dvc_yaml, project / "dvc.yaml")
    try:
        proc = sh(project, str(BIN / "python"), "-m", "flows.pipeline", check=False, extra_env=server)
        assert proc.returncode == 1
        assert "stage 'broken' failed" in proc.stderr and "[broken] error: backbone rejected" in proc.stderr
        # This run, not one the served cron schedule created ahead of time for its deployment.
        flow_runs = api(url, "/flow_runs/filter", {"flows": {"name": {"any_": ["ssl-pipeline"]}},
                                                   "flow_runs": {"deployment_id": {"is_null_": True}},
                                                   "sort": "EXPECTED_START_TIME_DESC", "limit": 1, "offset": 0})
        assert flow_runs[0]["state_type"] == "FAILED" and "stage 'broken'" in flow_runs[0]["state"]["message"]
        tasks = api(url, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_runs[0]["id"]]}},
                                               "sort": "EXPECTED_START_TIME_DESC", "limit": 50, "offset": 0})
        runs = {t["name"]: t for t in tasks}
        assert runs["flaky"]["state_type"] == "COMPLETED" and runs["flaky"]["run_count"] == 2
        assert runs["broken"]["state_type"] == "FAILED" and runs["broken"]["run_count"] == 1
        report = latest_artifact(url, "ssl-pipeline-report")["data"]
        assert "| broken | failed |" in report and "| pretrain | up to date |" in report
        # DVC is left usable: no lock held, the failed stage not recorded in dvc.lock.
        status = sh(project, "dvc", "status", check=False)
        assert status.returncode == 0 and "Unable to acquire lock" not in status.stdout + status.stderr
        lock = yaml.load(project / "dvc.lock")
        assert "broken" not in lock["stages"] and "flaky" in lock["stages"]
        assert not (project / "data/broken.txt").exists()
    finally:
        (project / "dvc.lock").write_text(lock_before)
        sh(project, "git", "checkout", "--", "dvc.yaml")
