"""Shared by every test folder: tests/ on sys.path (for small_project.py) and the built small project."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from small_project import make_small_project  # noqa: E402


@pytest.fixture(scope="session")
def built_small_project(tmp_path_factory) -> Path:
    """A small fresh copy of the project after `dvc repro`, built once per session; modules take copies
    (`small_project.copy_project`) so that none of them sees another's experiments or damage."""
    return make_small_project(tmp_path_factory.mktemp("template") / "project")
