"""Shared by every test folder: tests/ on sys.path (for small_project.py) and the built small project."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).parent))
# Two xdist workers share 2 cores: OpenMP threads that spin while waiting would steal the other's core
# (read by libgomp when torch loads, so before any test module imports it; stage subprocesses inherit it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from small_project import make_small_project  # noqa: E402


@pytest.fixture(scope="session")
def built_small_project(tmp_path_factory, worker_id) -> Path:
    """A small fresh copy of the project after `dvc repro`, built once per test run; modules take copies
    (`small_project.copy_project`) so that none of them sees another's experiments or damage.

    Under pytest-xdist (`-n 2`) every worker is its own session: the first one to ask builds the project in
    the run's shared temporary folder while the others wait on a file lock, so it is built once per run,
    not once per worker. A build that failed leaves no marker, and the next worker tries again.
    """
    base = tmp_path_factory.getbasetemp()  # a worker's own folder inside the run's pytest-N folder
    shared = base if worker_id == "master" else base.parent  # without xdist: this run's pytest-N itself
    root, built = shared / "small_project", shared / "small_project.built"
    with FileLock(str(shared / "small_project.lock")):
        if not built.exists():
            shutil.rmtree(root, ignore_errors=True)  # what a failed build left
            root.mkdir()
            make_small_project(root)
            built.touch()
    return root


# The longest test files, first. With `--dist loadfile` xdist hands out whole files in this order (the
# Makefile turns off its own reordering by test count, which put these few-test files last, so that one
# worker ran the Prefect tests alone for minutes at the end). Interleaved so that each worker starts with
# one that needs the small project and one that does not (the first build takes about 1.5 minutes).
LONG_FIRST = ("orchestration/test_flows_schedule_e2e.py", "stages/test_pretrain.py", "study/test_study_dvc.py",
              "orchestration/test_flows_sweep_e2e.py", "test_pipeline_e2e.py", "methods/test_methods_e2e.py")


def pytest_collection_modifyitems(config, items):
    root, last = Path(__file__).parent, len(LONG_FIRST)
    rank = {name: i for i, name in enumerate(LONG_FIRST)}

    def position(item) -> int:
        path = Path(str(item.fspath))
        return rank.get(path.relative_to(root).as_posix(), last) if path.is_relative_to(root) else last

    items.sort(key=position)  # stable: every file keeps its own order, the rest keep pytest's
