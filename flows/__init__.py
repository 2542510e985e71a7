"""Prefect flows around the DVC pipeline: run it (`flows.pipeline`), serve it on a schedule (`flows.serve`),
sweep parameters as DVC experiments (`flows.sweep`). DVC alone decides what is stale; Prefect adds retries,
logs, artifacts and schedules.

Importing this package sets defaults before Prefect is imported: analytics off (offline machines) and
Prefect's state (profiles, SQLite database) under the project's ignored `.prefect/` instead of
`~/.prefect`, unless the user set PREFECT_HOME.
"""
from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("PREFECT_HOME", str(_REPO / ".prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
