"""A Prefect server on loopback for the flow tests, and the REST calls they make to it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from small_project import BIN, env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(url: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{url}{path}", data=data, method="POST" if data else "GET",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def latest_artifact(url: str, key: str):
    found = api(url, "/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}, "limit": 1, "offset": 0,
                                           "sort": "CREATED_DESC"})
    assert found, f"no artifact {key}"
    return found[0]


def wait_flow_run(url: str, run_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(url, f"/flow_runs/{run_id}")
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(2)
    raise AssertionError(f"flow run {run_id} did not finish within {timeout} s")


def wait_scheduled_run(url: str, deployment_id: str, timeout: float) -> dict:
    """The first run the server's scheduler created by itself for the deployment, once it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api(url, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}},
                                              "sort": "EXPECTED_START_TIME_ASC", "limit": 10, "offset": 0})
        scheduled = [r for r in runs if r["auto_scheduled"]]
        if scheduled and scheduled[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return scheduled[0]
        time.sleep(2)
    raise AssertionError(f"no scheduled run of deployment {deployment_id} finished within {timeout} s "
                         "(does the server's scheduler create runs? see its log)")


def interrupt_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """Ctrl+C to a process group started with start_new_session (Prefect shuts down cleanly on SIGINT), then
    SIGKILL if it has not exited within `grace` seconds."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def prefect_server(home: Path):
    """`prefect server start` on 127.0.0.1 with its SQLite database in `home`; yields the environment
    (PREFECT_HOME, PREFECT_API_URL) that points flows and the CLI at it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    penv = {"PREFECT_HOME": str(home), "PREFECT_API_URL": url}
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env() | penv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if api(url, "/health") is True:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "prefect server exited"
            assert time.monotonic() < deadline, "prefect server did not answer within 120 s"
            time.sleep(1)
        yield penv
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
