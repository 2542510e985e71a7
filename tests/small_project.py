"""A fresh git copy of the project with a shrunk embedded dataset, for tests that run the real DVC CLI.

Shared by the end-to-end, Prefect flow and study tests (tests/conftest.py builds one per session).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

SMALL = {  # conf/<file> -> keys to override, so that `dvc exp run` (which recomposes) keeps them
    "generate/default.yaml": {
        "classification": {"train_per_class": 12, "val_per_class": 3, "image_size": 32},
        "sysu": {"query_ids": 6, "distractors": 10, "train_bags": 3, "images_per_bag": 4},
        "coco": {"train_images": 6, "val_images": 3}},
    "train/cpu.yaml": {"epochs": 1, "batch_size": 16, "image_size": 24},
    "model/resnet18.yaml": {"projector_hidden": 64, "projector_out": 32, "predictor_hidden": 64},
    "eval/default.yaml": {"seeds": 2, "knn": {"k": 10}, "linear": {"epochs": 2, "batch_size": 32},
                          "reid": {"height": 64, "width": 32, "batch_size": 16},
                          "coco": {"iterations": 2, "batch_size": 2, "train_sizes": [64], "test_size": 64,
                                   "fpn_channels": 16, "probe_iterations": 2}},
}


def env() -> dict[str, str]:
    """The environment the stage commands need: the venv's python first on PATH, analytics off, CI quiet."""
    return os.environ | {"PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
                         "GX_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                         "CI": "1", "PIPELINE_WEB_ASSETS": str(REPO / ".tools" / "web")}


def sh(cwd: Path, *args: str, check: bool = True, timeout: float = 600,
       extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(args, cwd=cwd, env=env() | (extra_env or {}), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:  # show what it printed before it stalled (CI once saw only a timeout)
        out = [x.decode(errors="replace") if isinstance(x, bytes) else (x or "") for x in (e.stdout, e.stderr)]
        raise AssertionError(f"{' '.join(args)} still running after {timeout} s:\n{out[0][-6000:]}\n"
                             f"{out[1][-6000:]}") from None
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _project_files(repo: Path = REPO) -> list[str]:
    """What a clone of the working tree would hold: git-tracked files, and untracked ones (new code not yet
    committed) outside data/. Never the user's own pipeline outputs under data/: an interrupted `dvc repro`
    leaves them untracked *and* unignored (DVC rewrites the .gitignore files only at the end of a run), and a
    copy of data/validated/manifests would then clash with the copy's own output ("already tracked by SCM")."""
    def listed(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", *args], cwd=repo, capture_output=True, text=True, check=True)
        return [f for f in out.stdout.split("\n") if f]

    untracked = [f for f in listed("--others", "--exclude-standard") if not f.startswith("data/")]
    return [f for f in sorted(set(listed("--cached")) | set(untracked)) if (repo / f).is_file()]


def git_commit(root: Path, message: str) -> None:
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def make_small_project(root: Path, repro: bool = True) -> Path:
    """Copy the project's files to `root`, shrink the dataset, commit, and (by default) `dvc repro`."""
    for rel in _project_files():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    yaml = YAML()
    for rel, values in SMALL.items():
        conf = yaml.load(root / "conf" / rel)
        for key, value in values.items():
            if isinstance(value, dict):
                conf[key].update(value)
            else:
                conf[key] = value
        yaml.dump(conf, root / "conf" / rel)
    sh(root, str(BIN / "python"), "-c",
       "import sys; sys.path.insert(0, '.'); from pipeline import config; "
       "config.REPO = config.Path('.').resolve(); config.CONF_DIR = config.REPO / 'conf'; "
       "config.write_composed(config.REPO / 'params.yaml')")
    sh(root, "git", "init", "-q")
    git_commit(root, "fresh clone")
    if repro:
        sh(root, "dvc", "repro")
    return root


def copy_project(built: Path, root: Path) -> Path:
    """A copy of a project `make_small_project` built (git history, DVC cache and outputs, file times kept):
    what a clone that ran `dvc repro` would hold, in seconds instead of a repro's minutes."""
    shutil.copytree(built, root, symlinks=True)
    return root
