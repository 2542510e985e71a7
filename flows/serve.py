"""Serve the pipeline on a cron schedule (and the sweep, on demand) against a running Prefect server.

    prefect server start --host 127.0.0.1          # or `make server`; state in .prefect/ (SQLite)
    python -m flows.serve --cron "0 3 * * *"       # or `make serve`; Ctrl+C stops serving

Creates two deployments and runs their flow runs in subprocesses from the current directory (the
project root): `ssl-pipeline/<name>` on the cron schedule and `ssl-sweep/<name>-sweep` without a schedule
(trigger it from the UI or `prefect deployment run ssl-sweep/<name>-sweep -p 'params=["loss.k=1,2"]'`).
Schedules need a real server: Prefect's temporary per-process server cannot schedule, so without
PREFECT_API_URL this points at the local one, http://127.0.0.1:4200/api, and stops with a clear message
when nothing answers there.
"""
from __future__ import annotations

import argparse
import os
import sys
import urllib.request

import flows  # noqa: F401  (PREFECT_HOME and analytics defaults, before prefect is imported)

DEFAULT_API = "http://127.0.0.1:4200/api"


def server_answers(api_url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n")[0])
    ap.add_argument("--cron", default="0 3 * * *", help='cron schedule of the pipeline (default "0 3 * * *")')
    ap.add_argument("--timezone", default=None, help="IANA time zone of the cron schedule (default UTC)")
    ap.add_argument("--name", default="nightly", help="deployment name (default nightly)")
    ap.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="scheduled runs are DVC experiments with these parameters (repeatable)")
    ap.add_argument("--limit", type=int, default=1,
                    help="flow runs at a time (default 1: DVC locks the workspace, runs queue up)")
    args = ap.parse_args(argv)

    os.environ.setdefault("PREFECT_API_URL", DEFAULT_API)
    api = os.environ["PREFECT_API_URL"]
    if not server_answers(api):
        print(f"flows.serve: no Prefect server answers at {api}; start one first with `make server` "
              "(prefect server start --host 127.0.0.1) or set PREFECT_API_URL", file=sys.stderr)
        return 2

    from prefect import serve
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import EntrypointType

    from pipeline.dvc_cli import project_root
    from flows.pipeline import check_overrides, ssl_pipeline
    from flows.sweep import ssl_sweep

    try:
        project_root()  # the served runs start in this directory
        overrides = check_overrides(args.overrides)
    except ValueError as e:
        print(f"flows.serve: {e}", file=sys.stderr)
        return 2
    # Module entry points: the runs import flows.pipeline as a package module (its absolute imports work).
    pipeline = ssl_pipeline.to_deployment(
        name=args.name, schedule=CronSchedule(cron=args.cron, timezone=args.timezone),
        parameters={"overrides": overrides} if overrides else None,
        entrypoint_type=EntrypointType.MODULE_PATH,
        description=f"The DVC pipeline on cron '{args.cron}'; DVC runs only the stale stages")
    sweep = ssl_sweep.to_deployment(name=f"{args.name}-sweep", entrypoint_type=EntrypointType.MODULE_PATH,
                                    description="A DVC experiment sweep (trigger with params)")
    serve(pipeline, sweep, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
