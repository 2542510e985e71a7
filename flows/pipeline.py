"""The DVC pipeline as a Prefect flow: one task per stage, in DAG order, each a `dvc repro --single-item`.

    python -m flows.pipeline                       # every stage through `dvc repro` (stale ones run)
    python -m flows.pipeline -S loss.k=3 -n k3     # overrides: one `dvc exp run -S ...` experiment

Stages are read from `dvc dag` on every run, so stages added to dvc.yaml are picked up without code
changes. DVC decides what is stale (tasks have no Prefect cache); stage output goes to the Prefect logs
line by line; a stage killed by a signal or blocked by another DVC process's lock is retried, a stage
that fails on its own (bad params, bad data, a bug) fails the flow at once, named in the flow's state.
After the run (also after a failure) two artifacts are published: `ssl-pipeline-metrics` (every metric
of every stage, its value before this run, the change, and the committed value at HEAD) and
`ssl-pipeline-report` (stage outcomes, links to the plots and the Great Expectations Data Docs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import flows  # noqa: F401  (PREFECT_HOME and analytics defaults, before prefect is imported)
from pipeline import dvc_cli
from pipeline.evaluation import summary
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

PLOTS_DIR = "data/reports/plots"          # `dvc plots show` renders the declared plots here
DATA_DOCS_GLOB = "data/reports/**/data_docs/index.html"


class StageError(RuntimeError):
    """A DVC stage failed on its own; running it again would fail the same way."""


class TransientStageError(StageError):
    """A DVC stage was killed by a signal or could not get DVC's lock: worth a retry."""


def _retry_if_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except TransientStageError:
        return True
    except Exception:  # noqa: BLE001  (any other failure is deterministic: report it now)
        return False
    return False


def _failure(what: str, run: dvc_cli.DvcRun) -> StageError:
    kind = TransientStageError if run.transient else StageError
    err = kind(f"{what} failed (dvc exit {run.returncode}):\n{run.error_summary()}")
    err.outcomes = run.outcomes  # what DVC said about each stage before it stopped
    return err


@task(name="dvc-stages", cache_policy=NO_CACHE)
def discover_stages(project_dir: str) -> list[str]:
    """The project's stages in DAG order (from `dvc dag`)."""
    stages = dvc_cli.stages_in_order(Path(project_dir))
    get_run_logger().info("stages in order: %s", ", ".join(stages))
    return stages


@task(name="dvc-stage", task_run_name="{stage}", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=[10, 60], retry_condition_fn=_retry_if_transient)
def reproduce_stage(stage: str, project_dir: str) -> dict:
    """`dvc repro --single-item <stage>`: runs the stage if DVC finds it stale, else reports it skipped."""
    logger = get_run_logger()
    start = time.monotonic()
    run = dvc_cli.run_dvc(Path(project_dir), ["repro", "--single-item", stage], on_line=logger.info)
    if not run.ok:
        raise _failure(f"stage '{stage}'", run)
    outcome = run.outcomes.get(stage, dvc_cli.UP_TO_DATE)
    logger.info("stage '%s': %s", stage, outcome)
    return {"stage": stage, "outcome": outcome, "seconds": round(time.monotonic() - start, 1)}


@task(name="dvc-exp-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60],
      retry_condition_fn=_retry_if_transient)
def run_experiment(overrides: list[str], name: str | None, project_dir: str) -> dict[str, str]:
    """`dvc exp run -S ... [-n name]`: the whole pipeline as one DVC experiment; returns stage outcomes."""
    logger = get_run_logger()
    args = ["exp", "run", *[a for o in overrides for a in ("-S", o)], *(["-n", name] if name else [])]
    # exp_run puts params.yaml and dvc.lock back if the run fails or is interrupted.
    run = dvc_cli.exp_run(Path(project_dir), args[2:], on_line=logger.info)
    if not run.ok:
        stage = run.failed_stage
        raise _failure(f"stage '{stage}' of experiment {' '.join(args[2:])}" if stage
                       else f"dvc {' '.join(args)}", run)
    return run.outcomes


def check_overrides(overrides: list[str]) -> list[str]:
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise ValueError(f"parameter overrides must look like key=value (e.g. loss.k=3), got {bad}")
    return list(overrides)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


# The evaluations' results lead the metrics artifact; the data bookkeeping (validate, scan) comes last.
LEADING_STAGES = ("linear_eval", "reid_eval", "coco_finetune", "pretrain", "supervised")


def _rounded(value):
    return float(f"{value:.4g}") if isinstance(value, float) else value


def metric_rows(files_by_stage: dict, before: dict, after: dict, head: dict) -> list[dict]:
    """One row per metric of every stage: value now, before this run, change, committed (HEAD); the evaluation
    stages first, values to 4 significant digits."""
    rows = []
    attributed = {path for files in files_by_stage.values() for path in files["metrics"]}
    loose = sorted(set(after) - attributed)  # e.g. dvc.yaml's top-level `metrics:` list
    if loose:
        files_by_stage = files_by_stage | {"-": {"metrics": loose, "plots": []}}
    order = {stage: i for i, stage in enumerate(LEADING_STAGES)}
    for stage, files in sorted(files_by_stage.items(), key=lambda kv: order.get(kv[0], len(order))):
        for path in files["metrics"]:
            now = after.get(path, {})
            for key in sorted(set(now) | set(before.get(path, {}))):
                value, prev = now.get(key), before.get(path, {}).get(key)
                change = (round(value - prev, 6) if _number(value) is not None and _number(prev) is not None
                          else None)
                rows.append({"stage": stage, "file": path, "metric": key, "value": _rounded(value),
                             "previous run": _rounded(prev), "change": _rounded(change),
                             "HEAD": _rounded(head.get(path, {}).get(key))})
    return rows


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@task(name="report", cache_policy=NO_CACHE)
def publish_report(project_dir: str, results: list[dict], before: dict, overrides: list[str],
                   failure: str | None) -> list[dict]:
    """Metrics table + run report artifacts; returns the metric rows."""
    logger = get_run_logger()
    root = Path(project_dir)
    files_by_stage = dvc_cli.stage_files(root)
    after = dvc_cli.metrics_show(root)
    try:
        head = dvc_cli.metrics_at_head(root)
    except RuntimeError as e:  # e.g. no commit yet: the HEAD column stays empty
        logger.warning("no HEAD metrics: %s", e)
        head = {}
    rows = metric_rows(files_by_stage, before, after, head)
    create_table_artifact(key="ssl-pipeline-metrics", table=rows,
                          description="Metrics of every stage: value, value before this run, change, HEAD")

    plots_link = None
    if any(f["plots"] for f in files_by_stage.values()):
        run = dvc_cli.run_dvc(root, ["plots", "show", "--out", PLOTS_DIR])
        if run.ok and (root / PLOTS_DIR / "index.html").is_file():
            plots_link = (root / PLOTS_DIR / "index.html").as_uri()
        else:
            logger.warning("dvc plots show failed: %s", run.error_summary())
    docs = sorted(root.glob(DATA_DOCS_GLOB))

    md = ["# SSL pipeline run", ""]
    if overrides:
        md += [f"Experiment: `dvc exp run {' '.join('-S ' + o for o in overrides)}`", ""]
    md += [f"**Failed:** {failure}" if failure else "All stages succeeded.", "",
           "| stage | outcome | seconds |", "|---|---|---|"]
    md += [f"| {r['stage']} | {r['outcome']} | {_fmt(r.get('seconds'))} |" for r in results]
    md += ["", "## Metrics (change against the workspace before this run)", "",
           "| stage | metric | value | previous run | change | HEAD |", "|---|---|---|---|---|---|"]
    md += [f"| {r['stage']} | {r['metric']} | {_fmt(r['value'])} | {_fmt(r['previous run'])} | "
           f"{_fmt(r['change'])} | {_fmt(r['HEAD'])} |" for r in rows if r["value"] is not None]
    table = summary.markdown(root)
    if table.count("\n") > 2:  # the evaluations x backbones table, once the evaluations have run
        md += ["", "## Evaluations: random init, pretrained, supervised (docs/evaluation.md)", "", table]
    md += ["", "## Links", ""]
    md += [f"- Plots (`dvc plots show`): [{PLOTS_DIR}/index.html]({plots_link})" if plots_link
           else "- Plots: none rendered"]
    md += [f"- Great Expectations Data Docs: [{d.relative_to(root)}]({d.as_uri()})" for d in docs]
    create_markdown_artifact(key="ssl-pipeline-report", markdown="\n".join(md),
                             description="Stage outcomes, metrics and links of the last pipeline run")
    return rows


@flow(name="ssl-pipeline")
def ssl_pipeline(overrides: list[str] | None = None, experiment_name: str | None = None,
                 project_dir: str | None = None) -> list[dict]:
    """Run every DVC stage in DAG order (or, with overrides, one `dvc exp run -S ...`) and report.

    Returns one {"stage", "outcome", "seconds"} per stage; outcome is "ran", "up to date",
    "restored from cache", "failed" or "not run". Raises StageError naming the stage that failed.
    """
    logger = get_run_logger()
    root = dvc_cli.project_root(project_dir)
    overrides = check_overrides(overrides or [])
    stages = discover_stages(str(root))
    before = dvc_cli.metrics_show(root)  # the previous run's results, for the change column
    results: list[dict] = []
    failure: StageError | None = None
    if overrides:
        start = time.monotonic()
        try:
            outcomes = run_experiment(overrides, experiment_name, str(root))
        except StageError as e:
            failure, outcomes = e, getattr(e, "outcomes", {})
        seconds = round(time.monotonic() - start, 1)
        results = [{"stage": s, "outcome": outcomes.get(s, dvc_cli.NOT_RUN), "seconds": None} for s in stages]
        if failure is None:
            results.append({"stage": "(experiment total)", "outcome": "-", "seconds": seconds})
    else:
        for stage in stages:
            if failure is not None:
                results.append({"stage": stage, "outcome": dvc_cli.NOT_RUN, "seconds": None})
                continue
            try:
                results.append(reproduce_stage(stage, str(root)))
            except StageError as e:
                failure = e
                results.append({"stage": stage, "outcome": dvc_cli.FAILED, "seconds": None})
    failure_line = str(failure).splitlines()[0] if failure else None
    try:
        publish_report(str(root), results, before, overrides, failure_line)
    except Exception as e:  # noqa: BLE001  (a broken report must not hide the stages' own outcome)
        if failure is None:
            raise
        logger.warning("report not published: %s", e)
    for r in results:
        logger.info("%-16s %s", r["stage"], r["outcome"])
    if failure is not None:
        raise failure
    return results


def run_cli(label: str, call: Callable[[], object]) -> int:
    """A flow run from the command line: its known failures print one line `<label> failed: ...`, exit 1."""
    try:
        call()
    except (StageError, dvc_cli.ProjectError, ValueError) as e:
        print(f"{label} failed: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.split("\n")[0])
    ap.add_argument("-S", "--set-param", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="run as a DVC experiment with this parameter (repeatable)")
    ap.add_argument("-n", "--name", help="experiment name (with -S)")
    ap.add_argument("--project-dir", help="directory holding dvc.yaml (default: the current directory)")
    args = ap.parse_args(argv)
    return run_cli("ssl-pipeline", lambda: ssl_pipeline(overrides=args.overrides, experiment_name=args.name,
                                                        project_dir=args.project_dir))


if __name__ == "__main__":
    sys.exit(main())
