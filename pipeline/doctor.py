"""`python -m pipeline.doctor` (`make doctor`): what is missing or misconfigured, in plain words.

Each check prints one line, `ok`, `warn` or `FAIL`, with what to do; the exit status is 1 when any check
fails. Nothing is changed. Checks: the project's virtual environment, the Python packages, the Debian
packages `scripts/setup.sh` installs, DVC's Hydra setting, params.yaml, the Prefect API, free disk.
"""
from __future__ import annotations

import configparser
import importlib
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "torchvision", "ffcv", "dvc", "prefect", "hydra", "great_expectations")
MIN_FREE_GIB = 5.0  # a default repro with its DVC cache needs well under this


@dataclass(frozen=True)
class Check:
    status: str  # "ok" | "warn" | "FAIL"
    what: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4} {self.what}: {self.detail}"


def check_venv(prefix: str = sys.prefix, repo: Path = REPO) -> Check:
    venv = (repo / ".venv").resolve()
    if Path(prefix).resolve() == venv:
        return Check("ok", "environment", f"running in {venv}")
    if not venv.is_dir():
        return Check("FAIL", "environment", f"{venv} does not exist: run `make setup` (or `make test` / `make repro`)")
    return Check("FAIL", "environment", f"running in {prefix}, not {venv}: `source .venv/bin/activate` (the stage "
                                        "commands in dvc.yaml call `python`)")


def check_packages(names: tuple[str, ...] = PACKAGES) -> Check:
    missing, found = [], []
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - an import that fails for any reason is what to report
            missing.append(f"{name} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        else:
            found.append(f"{name} {getattr(module, '__version__', '?')}")
    if missing:
        return Check("FAIL", "packages", f"cannot import {'; '.join(missing)}: run `make setup`")
    return Check("ok", "packages", ", ".join(found))


def apt_packages(setup: Path = REPO / "scripts/setup.sh") -> list[str]:
    """The Debian packages scripts/setup.sh installs (its APT_PKGS list: one source of truth)."""
    lists = [m.split() for m in re.findall(r"APT_PKGS=\(([^)]*)\)", setup.read_text())]
    return max(lists, key=len, default=[])  # the full list (setup.sh empties it for --uv-only)


def check_debian(packages: list[str] | None = None) -> Check:
    packages = apt_packages() if packages is None else packages
    if not packages:
        return Check("warn", "Debian packages", "no APT_PKGS list found in scripts/setup.sh: nothing checked")
    if not shutil.which("dpkg"):
        return Check("warn", "Debian packages", "no dpkg here (not Debian or Ubuntu): install the equivalents of "
                                                f"{', '.join(packages)} yourself")
    missing = [p for p in packages
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if missing:
        return Check("FAIL", "Debian packages", f"missing {', '.join(missing)} (ffcv builds and decodes with them): "
                                                "run `make setup` as root, or `apt-get install` them")
    return Check("ok", "Debian packages", ", ".join(packages))


def check_dvc_hydra(repo: Path = REPO) -> Check:
    config = configparser.ConfigParser()
    config.read(repo / ".dvc/config")
    enabled = config.get("hydra", "enabled", fallback="false").strip().lower() == "true"
    if not enabled:
        return Check("FAIL", "DVC", f"{repo / '.dvc/config'}: [hydra] enabled is not true, so `dvc exp run -S ...` "
                                    "would not recompose params.yaml from conf/: `dvc config hydra.enabled true`")
    return Check("ok", "DVC", "Hydra composition on (`dvc exp run -S` recomposes params.yaml from conf/)")


def check_params(repo: Path = REPO) -> Check:
    from .config import ParamsError, load_params

    try:
        load_params(repo / "params.yaml")
    except ParamsError as e:
        return Check("FAIL", "params.yaml", f"{e}".replace("\n", " "))
    return Check("ok", "params.yaml", "valid")


def check_prefect(url: str | None = None, timeout: float = 3.0) -> Check:
    url = os.environ.get("PREFECT_API_URL") if url is None else url
    if not url:
        return Check("warn", "Prefect", "PREFECT_API_URL is not set: flows start a temporary server of their own; for "
                                        "schedules run `make server` and `make serve` (docs/orchestration.md)")
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as r:
            healthy = r.status == 200
    except OSError as e:
        return Check("FAIL", "Prefect", f"{url} does not answer ({getattr(e, 'reason', e)}): start it with "
                                        "`make server`, or unset PREFECT_API_URL")
    if not healthy:
        return Check("FAIL", "Prefect", f"{url}/health did not answer 200")
    return Check("ok", "Prefect", f"{url} answers; schedules fire only while `make serve` runs")


def check_disk(repo: Path = REPO, min_free_gib: float = MIN_FREE_GIB) -> Check:
    free = shutil.disk_usage(repo).free / 2**30
    detail = f"{free:.1f} GiB free at {repo} (the DVC cache, .dvc/cache, lives there)"
    if free < min_free_gib:
        return Check("warn", "disk", f"{detail}; below {min_free_gib:g} GiB a repro may stop with a full disk "
                                     "(`dvc gc -w` drops cached versions no commit uses)")
    return Check("ok", "disk", detail)


def check_web_assets() -> Check:
    """The offline copies of Vega and the Data Docs' styles (pipeline/webassets.py) and DVC's plots template."""
    from . import webassets

    if not webassets.installed():
        return Check("warn", "offline pages", f"no offline Vega / Data Docs assets in {webassets.web_dir()}: "
                                              "`dvc plots show` and the Data Docs need a network; run `make setup`")
    return Check("ok", "offline pages", f"Vega and Data Docs assets in {webassets.web_dir()}")


def run_checks() -> list[Check]:
    checks = [check_venv(), check_packages(), check_debian(), check_dvc_hydra(), check_web_assets()]
    if checks[1].status == "ok":  # params need the packages (pydantic comes with them)
        checks.append(check_params())
    return checks + [check_prefect(), check_disk()]


def main() -> int:
    checks = run_checks()
    for c in checks:
        print(c.line())
    failed = [c for c in checks if c.status == "FAIL"]
    print(f"doctor: {len(failed)} problem(s)" if failed else "doctor: nothing missing")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
