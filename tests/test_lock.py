"""The dependency lock: pyproject.toml and uv.lock agree, and the running environment is the lock.

`make setup` installs with `uv sync --locked` (scripts/setup.sh); `make lock` refreshes uv.lock. These
tests catch a pyproject.toml edited without `make lock`, and an environment that drifted from the lock
(a package installed or upgraded by hand, e.g. SQLAlchemy 2.1, which stops Prefect's scheduler).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
UV = REPO / ".tools" / "uv" / "bin" / "uv"
SEED = {"pip", "setuptools", "wheel"}  # a venv's own installers: `uv sync` leaves them where they exist


def _locked() -> dict[str, str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {canonicalize_name(p["name"]): p["version"] for p in lock["package"] if "version" in p}


def _direct_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def _uv_lock_check(project: Path) -> subprocess.CompletedProcess:
    if not UV.is_file():
        pytest.fail(f"{UV} missing: run `make setup` (it installs the pinned uv)")
    return subprocess.run([str(UV), "lock", "--check", "--offline", "--python", "python3.11"], cwd=project,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "UV_PYTHON_DOWNLOADS": "never",
                               "HOME": str(Path.home())})


def test_every_direct_requirement_is_satisfied_by_its_locked_version():
    locked = _locked()
    for req in _direct_requirements():
        name = canonicalize_name(req.name)
        assert name in locked, f"pyproject.toml requires {req}, absent from uv.lock: run `make lock`"
        # '===' (arbitrary equality, used for torch) compares the version string exactly.
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"pyproject.toml requires {req}, uv.lock has {locked[name]}: run `make lock`")


def test_sqlalchemy_is_locked_below_2_1_where_prefects_scheduler_works():
    major, minor = (int(x) for x in _locked()["sqlalchemy"].split(".")[:2])
    assert (major, minor) < (2, 1)


def test_uv_agrees_that_the_lock_is_current():
    proc = _uv_lock_check(REPO)
    assert proc.returncode == 0, proc.stderr


def test_uv_lock_check_fails_when_pyproject_drifts(tmp_path):
    for name in ("pyproject.toml", "uv.lock", ".python-version"):
        shutil.copy2(REPO / name, tmp_path / name)
    pyproject = (tmp_path / "pyproject.toml").read_text()
    drifted = pyproject.replace('"sqlalchemy>=2.0,<2.1"', '"sqlalchemy>=2.1"')
    assert drifted != pyproject
    (tmp_path / "pyproject.toml").write_text(drifted)
    proc = _uv_lock_check(tmp_path)
    assert proc.returncode != 0
    assert "error" in proc.stderr


def test_the_running_environment_is_exactly_the_lock():
    """Every installed distribution is in uv.lock at the locked version (the project itself aside)."""
    locked = _locked()
    project = canonicalize_name(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"])
    drift = []
    # The venv's site-packages only: importing setuptools puts its vendored packages on sys.path.
    for dist in metadata.distributions(path=[sysconfig.get_paths()["purelib"]]):
        name = canonicalize_name(dist.metadata["Name"])
        if name == project or (name in SEED and name not in locked):
            continue
        # Local version labels (torch's '+cu130') are part of the wheel, not of the locked version.
        version = re.sub(r"\+.*$", "", dist.version)
        if locked.get(name) != version:
            drift.append(f"{name} {dist.version} (lock: {locked.get(name, 'absent')})")
    assert not drift, "installed packages differ from uv.lock (run `make setup`): " + ", ".join(sorted(drift))
