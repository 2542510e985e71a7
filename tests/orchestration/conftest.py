"""The flow tests' fixtures: one Prefect server and one copy of the built small project per test module
(the module's tests run in order on one pytest-xdist worker, `--dist loadfile`)."""
from __future__ import annotations

from pathlib import Path

import pytest
from prefect_server import prefect_server
from small_project import copy_project


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with prefect_server(tmp_path_factory.mktemp("prefect_home")) as penv:
        yield penv


@pytest.fixture(scope="module")
def project(built_small_project, tmp_path_factory) -> Path:
    return copy_project(built_small_project, tmp_path_factory.mktemp("flows") / "project")
