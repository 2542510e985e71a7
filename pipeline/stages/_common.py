"""What every stage does first: validate params.yaml, set up logging, turn known errors into exit codes."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from ..config import Params, ParamsError, load_params
from ..data.errors import DatasetLayoutError
from ..evaluation.backbone_io import BackboneLoadError
from ..ffcv_io.sidecar import BetonError

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
    try:
        params = load_params()
        body(params)
    except (ParamsError, DatasetLayoutError, BetonError, BackboneLoadError, StageFailed) as e:
        print(f"[{name}] error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def write_metrics(path: Path, metrics: dict) -> None:
    """metrics.json, sorted and indented (stable diffs in git), renamed into place only when complete."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
