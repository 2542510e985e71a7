"""The flows' reading of DVC: stage order, stage outcomes, queued experiments, metric tables, retries."""
from __future__ import annotations

import pytest

from pipeline import dvc_cli
from flows.pipeline import StageError, TransientStageError, _failure, check_overrides, metric_rows
from flows.sweep import find_metric, parse_queued, queue_status, wait_for_queue


def test_toposort_keeps_dvc_yaml_order_among_ready_stages():
    nodes = ["check_params", "generate", "validate", "convert", "pretrain", "linear_eval", "reid_eval"]
    edges = [("generate", "validate"), ("generate", "convert"), ("validate", "convert"),
             ("convert", "pretrain"), ("pretrain", "reid_eval"), ("pretrain", "linear_eval"),
             ("convert", "linear_eval"), ("convert", "reid_eval")]
    assert dvc_cli.toposort(nodes, edges) == nodes
    # A stage listed before its dependency in dvc.yaml still runs after it.
    assert dvc_cli.toposort(["b", "a"], [("a", "b")]) == ["a", "b"]


def test_downstream_follows_edges_transitively():
    edges = [("convert", "pretrain"), ("pretrain", "linear_eval"), ("linear_eval", "report"), ("convert", "x")]
    assert dvc_cli.downstream(edges, "pretrain") == {"linear_eval", "report"}
    assert dvc_cli.downstream(edges, "report") == set()


def test_toposort_names_a_cycle():
    with pytest.raises(RuntimeError, match="cycle"):
        dvc_cli.toposort(["a", "b"], [("a", "b"), ("b", "a")])


def test_stage_outcomes_from_dvc_output():
    lines = ["Running stage 'check_params':", "> python -m pipeline.stages.check_params",
             "Stage 'generate' didn't change, skipping",
             "Stage 'validate' is cached - skipping run, checking out outputs",
             "Running stage 'pretrain':",
             "ERROR: failed to reproduce 'pretrain': failed to run: python -m x, exited with 1"]
    assert dvc_cli.stage_outcomes(lines) == {"check_params": "ran", "generate": "up to date",
                                             "validate": "restored from cache", "pretrain": "failed"}


def test_only_signal_kills_and_lock_contention_are_transient():
    killed = dvc_cli.DvcRun(["repro"], 255, ["ERROR: failed to reproduce 'pretrain': failed to run: "
                                              "python -m pipeline.stages.pretrain, exited with -9"])
    locked = dvc_cli.DvcRun(["repro"], 255, ["ERROR: Unable to acquire lock. Most likely another DVC "
                                              "process is running"])
    own = dvc_cli.DvcRun(["repro"], 255, ["[check_params] error: params.yaml: invalid parameters:",
                                           "  - loss.k = 0: Input should be greater than or equal to 1",
                                           "ERROR: failed to reproduce 'check_params': failed to run: "
                                           "python -m pipeline.stages.check_params, exited with 1"])
    assert isinstance(_failure("x", killed), TransientStageError)
    for code in (137, 143):  # the same kills reported through a shell that did not exec the command
        via_shell = dvc_cli.DvcRun(["repro"], 255, ["ERROR: failed to reproduce 'pretrain': failed to run: "
                                                     f"python -m pipeline.stages.pretrain, exited with {code}"])
        assert isinstance(_failure("x", via_shell), TransientStageError)
    exit_1370 = dvc_cli.DvcRun(["repro"], 255, ["ERROR: failed to reproduce 'x': failed to run: y, exited with 1370"])
    assert type(_failure("x", exit_1370)) is StageError
    assert isinstance(_failure("x", locked), TransientStageError)
    err = _failure("stage 'check_params'", own)
    assert type(err) is StageError and own.failed_stage == "check_params"
    assert "loss.k = 0" in str(err) and "stage 'check_params'" in str(err)


def test_overrides_must_be_key_value():
    assert check_overrides(["loss.k=3", "loss=median"]) == ["loss.k=3", "loss=median"]
    with pytest.raises(ValueError, match="key=value"):
        check_overrides(["loss.k"])


def test_metric_rows_change_against_previous_run_and_head():
    files = {"pretrain": {"metrics": ["m.json"], "plots": []}}
    rows = metric_rows(files, before={"m.json": {"knn": 0.2, "ok": True}},
                       after={"m.json": {"knn": 0.25, "ok": True, "new": 3}}, head={"m.json": {"knn": 0.1}})
    by = {r["metric"]: r for r in rows}
    assert by["knn"]["change"] == pytest.approx(0.05) and by["knn"]["HEAD"] == 0.1
    assert by["ok"]["change"] is None            # booleans have no change
    assert by["new"]["previous run"] is None and by["new"]["change"] is None


def test_metric_files_of_no_stage_are_listed_too():
    rows = metric_rows({}, before={}, after={"top.json": {"acc": 1.0}}, head={})
    assert [(r["stage"], r["file"], r["metric"]) for r in rows] == [("-", "top.json", "acc")]


def test_parse_queued_pairs_each_experiment_with_its_overrides():
    lines = ["Queueing with overrides '{'params.yaml': ['loss.k=1', 'train.lr=0.5']}'.",
             "Queued experiment 'riven-stob' for future execution.",
             "Queueing with overrides '{'params.yaml': ['loss.k=3', 'train.lr=0.5']}'.",
             "Queued experiment 'scaly-glen' for future execution."]
    assert parse_queued(lines) == [{"name": "riven-stob", "overrides": {"loss.k": "1", "train.lr": "0.5"}},
                                   {"name": "scaly-glen", "overrides": {"loss.k": "3", "train.lr": "0.5"}}]


def test_queue_wait_ends_on_statuses_and_restarts_a_queue_left_without_workers():
    # The stall this replaces: both experiments succeeded, the worker idle, and `dvc exp run --run-all` waited on.
    polls = iter([({"a": "Running", "b": "Queued"}, 0),    # busy workers are not always listed: no restart
                  ({"a": "Running", "b": "Queued"}, 0),
                  ({"a": "Success", "b": "Queued"}, 0),    # the worker exited before seeing b: restart
                  ({"a": "Success", "b": "Queued"}, 0),
                  ({"a": "Success", "b": "Running"}, 1),
                  ({"a": "Success", "b": "Failed", "other": "Queued"}, 1)])  # an unrelated task: not waited for
    restarts, reports, sleeps = [], [], []
    final = wait_for_queue(["a", "b"], lambda: next(polls), lambda: restarts.append(1), reports.append,
                           poll_s=0.5, sleep=sleeps.append, restart_after=2)
    assert final == {"a": "Success", "b": "Failed"}
    assert restarts == [1] and sleeps == [0.5] * 5
    assert reports[0] == "a: Running, b: Queued" and reports[-1] == "a: Success, b: Failed"


def test_queue_status_reads_tasks_and_workers(monkeypatch, tmp_path):
    lines = ["Task     Name          Created    Status", "1a2b3c4  riven-stob    04:01 PM   Success",
             "5d6e7f8  scaly-glen    04:02 PM   Running", "", "Worker status: 1 active, 0 idle"]
    monkeypatch.setattr(dvc_cli, "run_dvc", lambda root, args, on_line=None: dvc_cli.DvcRun(list(args), 0, lines))
    assert queue_status(tmp_path) == ({"riven-stob": "Success", "scaly-glen": "Running"}, 1)


def test_find_metric_by_key_or_file_and_key():
    metrics = {"a.json": {"knn_top1": 0.3, "x": 1}, "b.json": {"x": 2}}
    assert find_metric(metrics, "knn_top1") == 0.3
    assert find_metric(metrics, "b.json:x") == 2
    with pytest.raises(ValueError, match="several files"):
        find_metric(metrics, "x")
    with pytest.raises(ValueError, match="known metrics: a.json:knn_top1"):
        find_metric(metrics, "nope")


def test_cli_failures_are_one_line_and_exit_1_other_errors_propagate(capsys):
    from flows.pipeline import run_cli

    assert run_cli("ssl-sweep", lambda: None) == 0
    assert run_cli("ssl-sweep", lambda: (_ for _ in ()).throw(StageError("stage pretrain failed"))) == 1
    assert capsys.readouterr().err == "ssl-sweep failed: stage pretrain failed\n"
    with pytest.raises(KeyError):
        run_cli("ssl-sweep", lambda: {}["x"])


def test_a_file_and_key_metric_names_one_plot_file():
    from flows.sweep import _file_part

    assert _file_part("data/reid/metrics.json:pretrained.mAP") == "data_reid_metrics.json_pretrained.mAP"
    assert _file_part("knn_top1") == "knn_top1"


def test_metric_rows_lead_with_the_evaluations_and_round_to_four_digits():
    files = {"validate": {"metrics": ["v.json"], "plots": []}, "linear_eval": {"metrics": ["l.json"], "plots": []}}
    rows = metric_rows(files, before={}, after={"v.json": {"success": True}, "l.json": {"top1": 0.7909999887}},
                       head={})
    assert [(r["stage"], r["metric"], r["value"]) for r in rows] == [("linear_eval", "top1", 0.791),
                                                                     ("validate", "success", True)]
