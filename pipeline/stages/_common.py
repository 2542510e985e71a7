"""What every stage does first: validate params.yaml, set up logging, turn known errors into exit codes."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from ..config import Params, ParamsError, load_params
from ..data.errors import DatasetLayoutError
from ..evaluation.errors import BackboneLoadError  # not backbone_io: check_params/scan need no torch
from ..ffcv_io.sidecar import BetonError
from ..io_safety import DiskFullError, describe_disk_full, disk_full_cause, write_text_atomic
from ..progress import every_s

log = logging.getLogger("pipeline")


class StageFailed(RuntimeError):
    """A stage found a problem it has already explained; exit non-zero without a traceback."""


def run_stage(name: str, body: Callable[[Params], None]) -> None:
    """Validate params.yaml, then run the stage body; known errors print one clear message and exit 1."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # Our own logger only: libraries (GX, DVC) keep their default, quieter levels.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[{name}] %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    restore = _exit_on_sigterm()
    try:
        try:
            every_s()  # a bad PIPELINE_PROGRESS_EVERY stops here, not minutes into the work
        except ValueError as e:
            raise StageFailed(str(e)) from None
        params = load_params()
        body(params)
    except (ParamsError, DatasetLayoutError, BetonError, BackboneLoadError, StageFailed, DiskFullError) as e:
        print(f"[{name}] error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as e:
        # Last resort: a library (DVCLive, GX, ffcv, torch) ran out of space in a write of its own.
        cause = disk_full_cause(e)
        if cause is None:
            raise
        print(f"[{name}] error: {describe_disk_full(cause)}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        restore()


def _exit_on_sigterm() -> Callable[[], None]:
    """Turn the first SIGTERM (how DVC/Prefect stop a stage) into SystemExit(143), so that the writers'
    clean-up runs and no temporary file is left behind; a second SIGTERM kills at once. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    pid = os.getpid()

    def handler(signum, frame):
        signal.signal(signum, signal.SIG_DFL)
        if os.getpid() != pid:  # a forked worker inherited this handler: die the ordinary way
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def eval_seeds(params, base: int | None = None) -> list[int]:
    """The seeds of the evaluations that train something: eval.seeds of them, from `base` (default: seed)."""
    start = params.seed if base is None else base
    return [start + i for i in range(params.eval.seeds)]


def write_metrics(path: Path, metrics: dict) -> None:
    """metrics.json, sorted and indented (stable diffs in git), renamed into place only when complete."""
    write_text_atomic(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


DETAILS = "details.json"


def headline(results: dict, keep: tuple[str, ...]) -> dict:
    """The scalar results whose dotted key matches a pattern of `keep` (fnmatch), nested as they were and floats
    rounded to 4 decimals: what `dvc metrics show` and `dvc exp show` list. Lists (per-seed values) and unmatched
    keys are left out (details.json keeps everything at full precision)."""
    from fnmatch import fnmatchcase

    out: dict = {}

    def walk(node: dict, prefix: str, target: dict) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict):
                sub: dict = {}
                walk(value, dotted + ".", sub)
                if sub:
                    target[key] = sub
            elif not isinstance(value, list) and any(fnmatchcase(dotted, pattern) for pattern in keep):
                target[key] = round(value, 4) if isinstance(value, float) else value
    walk(results, "", out)
    return out


def write_results(out_dir: Path, results: dict, keep: tuple[str, ...], metrics_name: str = "metrics.json") -> None:
    """details.json: everything the stage measured and how (per-seed values, spreads, protocol settings);
    then metrics.json (the DVC metric), the headline results `keep` selects. Both sorted and atomic."""
    write_metrics(Path(out_dir) / DETAILS, results)
    write_metrics(Path(out_dir) / metrics_name, headline(results, keep))


def skipped(dataset: str, params, metrics: Path, picture: Path | None = None) -> bool:
    """When the data group provides no `dataset` (sysu | coco): record `status: skipped` and the reason as the
    stage's metrics (and a picture saying so), so that no number measured on other data shows as current.
    Returns whether the stage is skipped."""
    reason = params.data.skipped_reason(dataset)
    if reason is None:
        return False
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one process writes
        return True
    if picture is not None:
        from ..evaluation.plots import notice_picture

        notice_picture(picture, "skipped", reason)
    write_metrics(metrics.parent / DETAILS, {"status": "skipped", "reason": reason})
    write_metrics(metrics, {"status": "skipped", "reason": reason})
    log.info("skipped: %s (recorded in %s)", reason, metrics)
    return True
