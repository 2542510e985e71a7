"""A parameter sweep as DVC experiments: queue, run the queue, publish `dvc exp show` and a plot.

    python -m flows.sweep -S 'loss.k=1,2,3,5' --metric knn_top1

Each -S is passed to `dvc exp run --queue` (DVC expands comma lists into one experiment per combination,
Hydra group switches such as `method=byol,simclr` included); `dvc queue start` then runs the queue, and
`dvc queue status` is polled until every experiment has finished (each experiment runs in a temporary copy
under .dvc/tmp/exps, taking unchanged stages' outputs from the DVC cache, so only the stages the parameter
reaches run). Published: the table artifact `ssl-sweep` (each
experiment's overrides, the chosen metric, the metrics that differ between experiments, which stages ran)
and `ssl-sweep-report` with a plot of the metric against the first swept parameter
(data/reports/sweeps/*.png).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Callable

import flows  # noqa: F401  (PREFECT_HOME and analytics defaults, before prefect is imported)
from pipeline import dvc_cli
from flows.pipeline import StageError, _failure, check_overrides, run_cli
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

SWEEPS_DIR = "data/reports/sweeps"
_QUEUEING = re.compile(r"^Queueing with overrides '(?P<ovr>.*)'\.$")
_QUEUED = re.compile(r"^Queued experiment '(?P<name>[^']+)' for future execution")


def parse_queued(lines: list[str]) -> list[dict]:
    """[{"name", "overrides": {"loss.k": "1"}}] from `dvc exp run --queue` output, in queue order."""
    out, pending = [], {}
    for line in (ln.strip() for ln in lines):
        if m := _QUEUEING.match(line):
            # DVC prints a dict of file -> ["key=value", ...]; keep the key=value strings.
            pending = dict(kv.split("=", 1) for kv in re.findall(r"'([^'=]+=[^']*)'", m["ovr"]))
        elif m := _QUEUED.match(line):
            out.append({"name": m["name"], "overrides": pending})
            pending = {}
    return out


@task(name="dvc-exp-queue", cache_policy=NO_CACHE)
def queue_experiments(params: list[str], project_dir: str) -> list[dict]:
    logger = get_run_logger()
    args = ["exp", "run", "--queue", *[a for p in params for a in ("-S", p)]]
    try:  # queued runs use the recorded version of `dvc add`-tracked data: refused while it differs
        run = dvc_cli.exp_run(Path(project_dir), args[2:], on_line=logger.info)
    except dvc_cli.TrackedDataChanged as e:
        raise StageError(str(e)) from None
    if not run.ok:
        raise _failure(f"dvc {' '.join(args)}", run)
    queued = parse_queued(run.lines)
    if not queued:
        raise StageError(f"dvc {' '.join(args)} queued no experiment:\n" + "\n".join(run.lines))
    return queued


FINISHED = {"Success", "Failed", "Killed"}
_WORKERS = re.compile(r"Worker status: (?P<active>\d+) active, (?P<idle>\d+) idle")


def queue_status(root: Path) -> tuple[dict[str, str], int | None]:
    """({experiment name: Success / Failed / Queued / Running / ...}, workers alive or None) from `dvc queue status`."""
    run = dvc_cli.run_dvc(root, ["queue", "status"])
    out, workers = {}, None
    for line in run.lines:
        cols = line.split()
        if len(cols) >= 3 and cols[-1] in FINISHED | {"Queued", "Running", "Unknown"}:
            out[cols[1]] = cols[-1]
        elif m := _WORKERS.search(line):
            workers = int(m["active"]) + int(m["idle"])
    return out, workers


def wait_for_queue(names: list[str], status: Callable[[], tuple[dict[str, str], int | None]],
                   restart: Callable[[], None], report: Callable[[str], None], poll_s: float = 5.0,
                   sleep: Callable[[float], None] = time.sleep, restart_after: int = 6) -> dict[str, str]:
    """Poll until every experiment in `names` has finished; returns their final statuses.

    Ends on the statuses, not on a worker's exit: `dvc exp run --run-all` can wait forever after its
    experiments succeeded, its worker idle (treeverse/dvc#8165, #10398; docs/speed.md). `dvc queue status`
    does not always list a busy worker (treeverse/dvc#10427), so only `restart_after` polls in a row with
    experiments queued, none running and no worker listed start the queue again (a no-op if one is alive).
    """
    last: dict[str, str] = {}
    idle = 0
    while True:
        states, workers = status()
        mine = {n: states.get(n, "Unknown") for n in names}
        if mine != last:
            report(", ".join(f"{n}: {s}" for n, s in mine.items()))
            last = mine
        if all(s in FINISHED for s in mine.values()):
            return mine
        idle = idle + 1 if workers == 0 and "Running" not in mine.values() else 0
        if idle >= restart_after:
            report(f"experiments queued, none running and no worker listed for {idle} polls: dvc queue start again")
            restart()
            idle = 0
        sleep(poll_s)


@task(name="dvc-queue-run", cache_policy=NO_CACHE)
def run_queue(names: list[str], jobs: int, project_dir: str, poll_s: float = 5.0) -> dict[str, dict[str, str]]:
    """Run the queued experiments with `dvc queue start`; stage outcomes per experiment, from `dvc queue logs`."""
    logger = get_run_logger()
    root = Path(project_dir)

    def start() -> None:
        run = dvc_cli.start_queue_workers(root, jobs)
        for line in run.lines:
            logger.info(line)
        if not run.ok:
            raise _failure("dvc queue start", run)

    start()
    finished = False
    try:
        wait_for_queue(names, lambda: queue_status(root), start, logger.info, poll_s)
        finished = True
    finally:
        # Idle workers are told to exit; an interrupted sweep (Prefect cancellation, Ctrl+C) kills its runs.
        dvc_cli.run_dvc(root, ["queue", "stop"] if finished else ["queue", "stop", "--kill"], on_line=logger.info)
    return {name: dvc_cli.stage_outcomes(dvc_cli.run_dvc(root, ["queue", "logs", name]).lines) for name in names}


def experiments_shown(root: Path, names: set[str]) -> dict[str, dict]:
    """name -> {"params": {...}, "metrics": {file: {flat key: value}}} from `dvc exp show --json`."""
    shown = dvc_cli.dvc_json(root, "exp", "show", "--json")
    out = {}
    for rev in shown:
        for exp in rev.get("experiments") or []:
            for run in exp.get("revs") or []:
                if run.get("name") in names and run.get("data"):
                    data = run["data"]
                    out[run["name"]] = {
                        "params": {f: v.get("data", {}) for f, v in (data.get("params") or {}).items()},
                        "metrics": {f: dvc_cli.flatten(v.get("data", {}))
                                    for f, v in (data.get("metrics") or {}).items()}}
    return out


def find_metric(metrics: dict[str, dict], metric: str):
    """`metric` is "key" or "file:key"; returns the value or raises naming what exists."""
    path, _, key = metric.rpartition(":")
    hits = [vals[key] for f, vals in metrics.items() if key in vals and (not path or f == path)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        known = sorted(f"{f}:{k}" for f, vals in metrics.items() for k in vals)
        raise ValueError(f"metric {metric!r} not found; known metrics: {', '.join(known)}")
    raise ValueError(f"metric {metric!r} is in several files; name it as file:key")


def _file_part(metric: str) -> str:
    """The metric as one file-name component: `data/reid/metrics.json:pretrained.mAP` has slashes."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", metric)


def _as_number(value: str):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def plot_metric(rows: list[dict], x_key: str, metric: str, path: Path) -> Path:
    """The metric against the first swept parameter; one line per value of the other swept keys."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [k for k in rows[0]["overrides"] if k != x_key] if rows else []
    series: dict[str, list[tuple]] = {}
    for r in rows:
        if r["metric"] is None:
            continue
        label = ", ".join(f"{k}={r['overrides'][k]}" for k in others) or metric
        series.setdefault(label, []).append((r["overrides"].get(x_key), r["metric"]))
    numeric = all(_as_number(x) is not None for pts in series.values() for x, _ in pts)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, pts in series.items():
        pts = sorted(pts, key=lambda p: _as_number(p[0])) if numeric else pts
        xs = [_as_number(x) if numeric else str(x) for x, _ in pts]
        ax.plot(xs, [y for _, y in pts], marker="o", label=label)
    ax.set_xlabel(x_key)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


@task(name="sweep-report", cache_policy=NO_CACHE)
def publish_sweep(project_dir: str, queued: list[dict], outcomes: dict, metric: str) -> list[dict]:
    root = Path(project_dir)
    status, _ = queue_status(root)
    shown = experiments_shown(root, {q["name"] for q in queued})
    rows = []
    for q in queued:
        exp = shown.get(q["name"], {"params": {}, "metrics": {}})
        ran = outcomes.get(q["name"], {})
        rows.append({"name": q["name"], "status": status.get(q["name"], "Unknown"), "overrides": q["overrides"],
                     "metrics": exp["metrics"],
                     "metric": find_metric(exp["metrics"], metric) if exp["metrics"] else None,
                     "ran": [s for s, o in ran.items() if o == dvc_cli.RAN],
                     "cached": [s for s, o in ran.items() if o in (dvc_cli.UP_TO_DATE, dvc_cli.RUN_CACHE)],
                     "failed": [s for s, o in ran.items() if o == dvc_cli.FAILED]})
    # Besides the chosen metric, show the metrics that differ between the experiments.
    flat = [{f"{f}:{k}": v for f, vals in r["metrics"].items() for k, v in vals.items()} for r in rows]
    varying = sorted(k for k in set().union(*flat) if len({repr(f.get(k)) for f in flat}) > 1) if flat else []
    table = []
    for r, f in zip(rows, flat):
        table.append({"experiment": r["name"], "status": r["status"], **r["overrides"], metric: r["metric"],
                      **{k.rpartition(":")[2] if k.rpartition(":")[2] != metric else k: f.get(k)
                         for k in varying if not k.endswith(":" + metric)},
                      "stages run": ", ".join(r["ran"]) or "-", "stages cached": ", ".join(r["cached"]) or "-"})
    create_table_artifact(key="ssl-sweep", table=table,
                          description=f"dvc exp show of the sweep: overrides, {metric}, metrics that differ")
    x_key = next(iter(rows[0]["overrides"]), None) if rows else None
    md = [f"# Sweep: {metric}", "",
          "| experiment | status | " + " | ".join(rows[0]["overrides"]) + f" | {metric} | stages run |",
          "|---|---|" + "---|" * (len(rows[0]["overrides"]) + 2)]
    md += [f"| {r['name']} | {r['status']} | " + " | ".join(r["overrides"].values())
           + f" | {r['metric']} | {', '.join(r['ran']) or '-'} |" for r in rows]
    if x_key and any(r["metric"] is not None for r in rows):
        png = plot_metric(rows, x_key, metric,
                          root / SWEEPS_DIR / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{_file_part(metric)}.png")
        create_image_artifact(image_url=png.as_uri(), key="ssl-sweep-plot",
                              description=f"{metric} against {x_key}")
        md += ["", f"Plot of {metric} against {x_key}: [{png.relative_to(root)}]({png.as_uri()})"]
    create_markdown_artifact(key="ssl-sweep-report", markdown="\n".join(md),
                             description="Sweep experiments and the plot of the chosen metric")
    return rows


@flow(name="ssl-sweep")
def ssl_sweep(params: list[str], metric: str = "knn_top1", jobs: int = 1,
              project_dir: str | None = None) -> list[dict]:
    """Queue `dvc exp run --queue -S <each of params>`, run the queue, publish the table and the plot.

    Returns one row per experiment (name, status, overrides, metric, stages ran / cached / failed);
    raises StageError naming the experiments and stages that failed (after publishing what finished).
    """
    logger = get_run_logger()
    root = dvc_cli.project_root(project_dir)
    params = check_overrides(params)
    if not params:
        raise ValueError("a sweep needs at least one -S key=v1,v2,... parameter")
    queued = queue_experiments(params, str(root))
    logger.info("queued: %s", ", ".join(f"{q['name']} {q['overrides']}" for q in queued))
    outcomes = run_queue([q["name"] for q in queued], jobs, str(root))
    rows = publish_sweep(str(root), queued, outcomes, metric)
    for r in rows:
        logger.info("%s %s %s=%s ran: %s", r["name"], r["overrides"], metric, r["metric"], ", ".join(r["ran"]))
    failed = [r for r in rows if r["status"] != "Success"]
    if failed:
        raise StageError("sweep experiments failed: " + "; ".join(
            f"{r['name']} {r['overrides']} ({r['status']}, stage {', '.join(r['failed']) or '?'})" for r in failed))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("-S", "--set-param", dest="params", action="append", default=[], required=True,
                    metavar="KEY=V1,V2,...", help="swept parameter (repeatable; DVC takes the product)")
    ap.add_argument("--metric", default="knn_top1", help="metric to plot: key or file:key (default knn_top1)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="experiments run at once (default 1)")
    ap.add_argument("--project-dir", help="directory holding dvc.yaml (default: the current directory)")
    args = ap.parse_args(argv)
    return run_cli("ssl-sweep", lambda: ssl_sweep(params=args.params, metric=args.metric, jobs=args.jobs,
                                                  project_dir=args.project_dir))


if __name__ == "__main__":
    sys.exit(main())
