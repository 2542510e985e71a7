"""End to end, as a new user would: a fresh copy of the project, `dvc repro`, experiments, a corrupted file.

Runs the real DVC CLI in a temporary git repository holding the project's files, with the embedded
dataset shrunk so that the whole module takes about a minute.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

SMALL = {  # conf/<file> -> keys to override, so that `dvc exp run` (which recomposes) keeps them
    "generate/default.yaml": {
        "classification": {"train_per_class": 12, "val_per_class": 3, "image_size": 32},
        "sysu": {"query_ids": 6, "distractors": 10, "train_bags": 3, "images_per_bag": 4},
        "coco": {"train_images": 6, "val_images": 3}},
    "train/cpu.yaml": {"epochs": 1, "batch_size": 16, "image_size": 24},
    "model/resnet18.yaml": {"projector_hidden": 64, "projector_out": 32, "predictor_hidden": 64},
    "eval/default.yaml": {"knn": {"k": 10}},
}


def sh(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
                        "GX_ANALYTICS_ENABLED": "false", "CI": "1"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _project_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return [f for f in out if f and (REPO / f).is_file()]


def _exp_loss_param(project: Path, name: str, key: str) -> list:
    """`loss.<key>` of the experiments called `name`, as `dvc exp show --json` lists them."""
    shown = json.loads(sh(project, "dvc", "exp", "show", "--json").stdout)
    return [run["data"]["params"]["params.yaml"]["data"]["loss"][key]
            for rev in shown for exp in (rev.get("experiments") or []) for run in exp["revs"]
            if run.get("name") == name]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh git repository with the project's files and a smaller embedded dataset."""
    root = tmp_path_factory.mktemp("clone") / "project"
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
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fresh clone")
    sh(root, "dvc", "repro")
    return root


def test_repro_runs_every_stage_and_writes_outputs(project):
    summary = json.loads((project / "data/validated/summary.json").read_text())
    assert summary["success"] is True
    manifests = {p.name for p in (project / "data/validated/manifests").iterdir()}
    assert {"classification.csv", "sysu.csv", "coco_images.csv", "coco_annotations.csv"} <= manifests
    assert (project / "data/reports/validate/data_docs/index.html").is_file()
    assert len(list((project / "data/beton").glob("*.beton"))) == 5
    metrics = json.loads((project / "data/pretrain/metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["random_init_knn_top1"] is not None
    assert (project / "data/pretrain/backbone.pt").is_file()
    assert (project / "dvc.lock").is_file()


def test_second_repro_runs_no_stage(project):
    out = sh(project, "dvc", "repro").stdout
    assert "Running stage" not in out and "up to date" in out


def test_exp_run_with_an_invalid_k_fails_naming_the_key(project):
    proc = sh(project, "dvc", "exp", "run", "-S", "loss.k=0", check=False)
    assert proc.returncode != 0
    assert "loss.k = 0" in proc.stdout + proc.stderr


def test_exp_run_with_k3_is_listed_and_reruns_no_data_stage(project):
    out = sh(project, "dvc", "exp", "run", "-n", "k3", "-S", "loss.k=3").stdout
    assert "Running stage 'check_params'" in out and "Running stage 'pretrain'" in out
    for stage in ("generate", "validate", "convert"):
        assert f"Running stage '{stage}'" not in out
    assert _exp_loss_param(project, "k3", "k") == [3]


def test_exp_run_switches_a_config_group(project):
    sh(project, "dvc", "exp", "run", "-n", "median", "-S", "loss=median")
    assert _exp_loss_param(project, "median", "variant") == ["median"]


def test_garbage_jpeg_stops_validate_naming_the_file(project):
    victim = sorted((project / "data/embedded/imagenet/val").rglob("*.jpg"))[0]
    original = victim.read_bytes()
    victim.write_bytes(b"garbage" * 100)
    try:
        proc = sh(project, "dvc", "repro", check=False)
        rel = victim.relative_to(project / "data/embedded/imagenet").as_posix()
        assert proc.returncode != 0
        assert rel in proc.stderr and "decodes" in proc.stderr
        assert not (project / "data/validated/summary.json").exists()
        assert victim.read_bytes() == b"garbage" * 100  # the user's file is left as it was
    finally:
        victim.write_bytes(original)
