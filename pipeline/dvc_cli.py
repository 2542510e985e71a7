"""The DVC side of the flows, free of Prefect: find the stages, run DVC commands with their output streamed
line by line, read what DVC reports (which stages ran, which failed, the metrics).

Everything goes through the `dvc` CLI of the venv the flow runs in, in the project root, so a flow run
does exactly what a user's `dvc repro` / `dvc exp run` would do.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

# Stage outcomes, as DVC reports them.
RAN = "ran"
UP_TO_DATE = "up to date"           # "Stage 'x' didn't change, skipping"
RUN_CACHE = "restored from cache"   # "Stage 'x' is cached - skipping run, checking out outputs"
FAILED = "failed"
NOT_RUN = "not run"

_OUTCOME_LINES = [
    (re.compile(r"^Running stage '(?P<stage>[^']+)'"), RAN),
    (re.compile(r"^Stage '(?P<stage>[^']+)' didn't change, skipping"), UP_TO_DATE),
    (re.compile(r"^Stage '(?P<stage>[^']+)' is cached - skipping run"), RUN_CACHE),
]
_FAILED_LINE = re.compile(r"failed to reproduce (?:stages: )?'(?P<stage>[^']+)'")
# Failures worth a retry: another DVC process held the repository lock (a user's `dvc repro` while the
# schedule fired), or the stage was killed by a signal (OOM killer, preemption). A stage exiting with an
# error of its own (bad params, bad data, a bug) fails the same way again: it is reported, not retried.
# DVC reports a signal as a negative code when the shell exec'd the command, and as the shell's 128 + N
# (137 SIGKILL, 143 SIGTERM) when it did not; which one depends on the user's $SHELL.
_TRANSIENT = re.compile(r"Unable to acquire lock|exited with (?:-\d+|137|143)\b")


class ProjectError(ValueError):
    """The flow was started somewhere that is not the project (no dvc.yaml)."""


@dataclass
class DvcRun:
    """One finished DVC command: exit code, every output line, and what it says about each stage."""
    args: list[str]
    returncode: int
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def outcomes(self) -> dict[str, str]:
        return stage_outcomes(self.lines)

    @property
    def failed_stage(self) -> str | None:
        for line in reversed(self.lines):
            if m := _FAILED_LINE.search(line):
                return m["stage"]
        return None

    @property
    def transient(self) -> bool:
        return any(_TRANSIENT.search(line) for line in self.lines)

    def error_summary(self) -> str:
        """The lines that explain the failure: the stage's own `error:` lines and DVC's ERROR lines."""
        picked = [ln.strip() for ln in self.lines if "error:" in ln.lower() or ln.startswith("ERROR")]
        picked += [ln.strip() for ln in self.lines if ln.startswith("  - ")]  # ParamsError details
        return "\n".join(dict.fromkeys(picked)) or "\n".join(self.lines[-10:])


def project_root(path: str | os.PathLike | None = None) -> Path:
    """The project directory (current directory by default); it must hold dvc.yaml."""
    root = Path(path or os.getcwd()).resolve()
    if not (root / "dvc.yaml").is_file():
        raise ProjectError(f"{root}: no dvc.yaml here; run the flows from the project root "
                           "(or pass project_dir=<the directory holding dvc.yaml>)")
    return root


def stage_env(root: Path) -> dict[str, str]:
    """Environment for DVC and the stage commands: the stage cmds call `python`, which must be the venv's."""
    bins = [root / ".venv" / "bin", Path(sys.executable).parent]
    path = os.pathsep.join(dict.fromkeys(str(b) for b in bins if b.is_dir()))
    return os.environ | {"PATH": f"{path}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
                         "GX_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"}


def dvc_executable(root: Path) -> str:
    for b in (root / ".venv" / "bin", Path(sys.executable).parent):
        if (b / "dvc").is_file():
            return str(b / "dvc")
    return "dvc"


def run_dvc(root: Path, args: Iterable[str], on_line: Callable[[str], None] | None = None) -> DvcRun:
    """Run `dvc <args>` in `root`, passing every output line (stdout and stderr merged) to `on_line`.

    DVC runs in its own process group: if the caller is interrupted (a Prefect timeout or cancellation,
    Ctrl+C), the whole group, stage command included, is stopped so that no orphan keeps DVC's
    repository lock.
    """
    args = list(args)
    proc = subprocess.Popen([dvc_executable(root), *args], cwd=root, env=stage_env(root),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            errors="replace", start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            if on_line is not None and line.strip():
                on_line(line)
        proc.wait()
    finally:
        if proc.poll() is None:
            _stop_group(proc)
    return DvcRun(args, proc.returncode, lines)


def start_queue_workers(root: Path, jobs: int) -> DvcRun:
    """`dvc queue start -j <jobs>`, waiting for that command only.

    The worker it spawns keeps the command's stdout open, so reading the output to its end (run_dvc) would
    last as long as the worker does; the output goes to a file instead and the call returns when `dvc queue
    start` itself exits.
    """
    import tempfile

    args = ["queue", "start", "-j", str(jobs)]
    with tempfile.TemporaryFile("w+", errors="replace") as out:
        code = subprocess.run([dvc_executable(root), *args], cwd=root, env=stage_env(root), stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True).returncode
        out.seek(0)
        return DvcRun(args, code, out.read().splitlines())


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def dvc_json(root: Path, *args: str):
    """Output of a `dvc ... --json` command, parsed; raises with DVC's message if it fails."""
    run = run_dvc(root, args)
    if not run.ok:
        raise RuntimeError(f"dvc {' '.join(args)} failed ({run.returncode}): {run.error_summary()}")
    text = "\n".join(run.lines)
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise RuntimeError(f"dvc {' '.join(args)} printed no JSON:\n{text}")
    return json.loads(text[start:])


def stage_outcomes(lines: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        for pattern, outcome in _OUTCOME_LINES:
            if m := pattern.match(line.strip()):
                out[m["stage"]] = outcome
        if m := _FAILED_LINE.search(line):
            out[m["stage"]] = FAILED
    return out


_DOT_NODE = re.compile(r'^"(?P<a>[^"]+)";$')
_DOT_EDGE = re.compile(r'^"(?P<a>[^"]+)" -> "(?P<b>[^"]+)";$')


def dag(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(stages in dvc.yaml order, edges) from `dvc dag --dot`; an edge (a, b): b depends on an output of a."""
    run = run_dvc(root, ["dag", "--dot"])
    if not run.ok:
        raise RuntimeError(f"dvc dag failed ({run.returncode}): {run.error_summary()}")
    nodes: list[str] = []
    edges: list[tuple[str, str]] = []
    for line in (ln.strip() for ln in run.lines):
        if m := _DOT_EDGE.match(line):
            edges.append((m["a"], m["b"]))
        elif m := _DOT_NODE.match(line):
            nodes.append(m["a"])
    for a, b in edges:
        for n in (a, b):
            if n not in nodes:
                nodes.append(n)
    return nodes, edges


def stages_in_order(root: Path) -> list[str]:
    """Every stage of the project in an order that runs each after the stages it depends on.

    Read from `dvc dag` on every call, so stages added to dvc.yaml are picked up without code changes;
    among stages that could run next, dvc.yaml's order is kept.
    """
    return toposort(*dag(root))


def downstream(edges: list[tuple[str, str]], stage: str) -> set[str]:
    """Every stage that depends, directly or not, on `stage`."""
    found, todo = set(), [stage]
    while todo:
        current = todo.pop()
        for a, b in edges:
            if a == current and b not in found:
                found.add(b)
                todo.append(b)
    return found


def toposort(nodes: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm; ties broken by the position in `nodes` (dvc.yaml's order)."""
    rank = {n: i for i, n in enumerate(nodes)}
    waiting = {n: {a for a, b in edges if b == n} for n in nodes}
    order: list[str] = []
    while waiting:
        ready = sorted((n for n, deps in waiting.items() if not deps), key=rank.__getitem__)
        if not ready:
            raise RuntimeError(f"dvc dag has a cycle among {sorted(waiting)}")
        order.append(ready[0])
        del waiting[ready[0]]
        for deps in waiting.values():
            deps.discard(ready[0])
    return order


def stage_files(root: Path) -> dict[str, dict[str, list[str]]]:
    """stage -> {"metrics": [...], "plots": [...]} as dvc.yaml declares them (interpolation resolved)."""
    from dvc.repo import Repo  # DVC's own reading of dvc.yaml, so ${...} paths and foreach stages resolve

    out: dict[str, dict[str, list[str]]] = {}
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            metrics = [o.def_path for o in stage.outs if o.metric]
            plots = [o.def_path for o in stage.outs if o.plot]
            if metrics or plots:
                # Named as `dvc dag` (run in the root) names it, whatever the caller's directory.
                name = stage.name if stage.path_in_repo == "dvc.yaml" else f"{stage.path_in_repo}:{stage.name}"
                out[name] = {"metrics": metrics, "plots": plots}
    return out


def flatten(values, prefix: str = "") -> dict[str, float | int | bool | str]:
    """Nested metrics -> {"a.b.c": value}, the way `dvc metrics diff` names them."""
    out = {}
    if isinstance(values, dict):
        for k, v in values.items():
            out |= flatten(v, f"{prefix}{k}.")
    elif isinstance(values, (int, float, bool, str)) or values is None:
        out[prefix[:-1]] = values
    return out


def metrics_show(root: Path) -> dict[str, dict]:
    """{metrics file: {flat key: value}} of the workspace, from `dvc metrics show --json`."""
    shown = dvc_json(root, "metrics", "show", "--json")
    files = next(iter(shown.values()), {}).get("data", {}) if shown else {}
    return {f: flatten(v.get("data", {})) for f, v in files.items() if "error" not in v}


def metrics_at_head(root: Path) -> dict[str, dict]:
    """{metrics file: {flat key: value at HEAD}}, from `dvc metrics diff HEAD --json --all`."""
    diff = dvc_json(root, "metrics", "diff", "HEAD", "--json", "--all")
    return {f: {k: d.get("old") for k, d in keys.items()} for f, keys in diff.items()}


# --- Experiments in the user's workspace -------------------------------------------------------------
# Measured with DVC 3.67 (docs/data-safety.md): `dvc exp run` force-checks-out every cached stage output
# before it reproduces (a file changed inside one is restored, an added file deleted), so the embedded
# dataset is a `cache: false` output of `generate`, which no checkout touches. `dvc add`-tracked data is
# left as it is by a workspace run, which records its new version; a queued or --temp run, though, works
# in a copy built from the last record and silently ignores the change: `exp_run` refuses those while
# such data differs from its record, naming the files. A failed or interrupted workspace run leaves
# params.yaml and dvc.lock modified (staged, when killed): `exp_run` puts them back.
RESTORED_ON_FAILURE = ("params.yaml", "dvc.lock")


class TrackedDataChanged(RuntimeError):
    """`dvc add`-tracked data differs from its record: a queued or --temp experiment would not see the change."""


def tracked_data_paths(root: Path) -> list[str]:
    """Paths tracked by `.dvc` files (`dvc add`), relative to the root; stage outputs are not included."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return sorted(str(Path(out.fs_path).relative_to(root)) for stage in repo.index.stages
                      if stage.is_data_source for out in stage.outs)


def tracked_data_changes(root: Path) -> dict[str, list[str]]:
    """{"modified"/"added"/"deleted": files} of `dvc add`-tracked data that differ from the recorded hash."""
    paths = tracked_data_paths(root)
    if not paths:
        return {}
    status = dvc_json(root, "data", "status", "--granular", "--json", *paths).get("uncommitted", {})
    return {kind: [f for f in files if not f.endswith("/")] for kind, files in sorted(status.items())
            if any(not f.endswith("/") for f in files)}


def check_tracked_data(root: Path) -> None:
    """Raise TrackedDataChanged, naming the files, when an experiment would rewrite `dvc add`-tracked data."""
    changes = tracked_data_changes(root)
    if changes:
        listing = "; ".join(f"{kind}: {', '.join(files[:10])}{' ...' if len(files) > 10 else ''}"
                            for kind, files in changes.items())
        raise TrackedDataChanged(
            f"dvc add-tracked data differs from its recorded version ({listing}); a queued or --temp "
            "experiment runs on the recorded version, not on these files. Record the new version first "
            "(`dvc add <path>`, then commit the .dvc file), undo the change (`dvc checkout <path>`), or run "
            "the experiment in the workspace (without --queue / --temp)")


def exp_run(root: Path, args: Iterable[str], on_line: Callable[[str], None] | None = None) -> DvcRun:
    """`dvc exp run <args>`: a queued or --temp run is refused while `dvc add`-tracked data differs from its
    record; a workspace run that fails or is interrupted has params.yaml and dvc.lock put back as they were
    (contents and git index)."""
    args = list(args)
    if {"--queue", "--temp", "--run-all"} & set(args):  # temporary copies, built from the last record
        check_tracked_data(root)
        return run_dvc(root, ["exp", "run", *args], on_line)
    saved = {name: (root / name).read_bytes() for name in RESTORED_ON_FAILURE if (root / name).is_file()}
    staged_before = _staged(root)
    run = None
    try:
        run = run_dvc(root, ["exp", "run", *args], on_line)
    finally:
        if run is None or not run.ok:
            _restore(root, saved, staged_before)
    return run


def _staged(root: Path) -> set[str]:
    proc = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=root, capture_output=True, text=True)
    return set(proc.stdout.split())


def _restore(root: Path, saved: dict[str, bytes], staged_before: set[str]) -> None:
    for name, content in saved.items():
        (root / name).write_bytes(content)
    # A killed `dvc exp run` leaves them staged: unstage what was not staged before the run.
    unstage = sorted(set(saved) & (_staged(root) - staged_before))
    if unstage:
        subprocess.run(["git", "reset", "-q", "--", *unstage], cwd=root, capture_output=True)
