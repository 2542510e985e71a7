"""The pretrain stage on a tiny project: outputs, export, a killed run resumed equals an uninterrupted one."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision

from pipeline.config import compose, validate_params
from pipeline.data.generate_classification import generate_classification
from pipeline.data.manifest import classification_tables
from pipeline.ffcv_io.datasets import convert_all

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
CLS = {"classes": 4, "image_size": 32, "train_per_class": 24, "val_per_class": 6, "palette_size": 4,
       "scale": [0.6, 0.9], "max_distractors": 1, "jpeg_quality": 90}
OVERRIDES = ["train.epochs=3", "train.batch_size=16", "train.image_size=24", "train.warmup_epochs=1",
             "train.num_workers=1", "train.checkpoint_every=1", "model.projector_hidden=64",
             "model.projector_out=32", "model.predictor_hidden=64", "eval.knn.k=10", "eval.linear.batch_size=32"]


def _write_params(project: Path, extra: list[str] = ()) -> None:
    from ruamel.yaml import YAML

    raw = compose([f"data.classification.root={project / 'imagenet'}", *OVERRIDES, *extra])
    validate_params(raw)
    YAML().dump(raw, project / "params.yaml")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A project folder with params.yaml, manifests and .beton files for a 4-class set."""
    project = tmp_path_factory.mktemp("pretrain") / "project"
    generate_classification(project / "imagenet", CLS, seed=3)
    _write_params(project)
    params = validate_params(compose([f"data.classification.root={project / 'imagenet'}", *OVERRIDES]))
    manifests = project / "data/validated/manifests"
    manifests.mkdir(parents=True)
    classification_tables(project / "imagenet", ("train", "val"))["classification"].to_csv(
        manifests / "classification.csv", index=False)
    convert_all(params, project / "data/beton", manifest_dir=manifests, num_workers=1)
    return project


def _copy(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


def _stage(project: Path, **popen) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(REPO), "CI": "1", "OMP_NUM_THREADS": "2"}
    return subprocess.Popen([sys.executable, "-m", "pipeline.stages.pretrain"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _run(project: Path) -> str:
    proc = _stage(project)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


@pytest.fixture(scope="module")
def uninterrupted(template, tmp_path_factory) -> Path:
    project = _copy(template, tmp_path_factory.mktemp("full") / "project")
    _run(project)
    return project


def test_outputs_metrics_and_learning_curve(uninterrupted):
    out = uninterrupted / "data/pretrain"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["steps"] == 3 * (96 // 16)
    assert 0 <= metrics["random_init_knn_top1"] <= 1 and 0 <= metrics["knn_top1"] <= 1
    assert 0 <= metrics["fn_selected"] <= 1 and 0 <= metrics["fn_hardest"] <= 1
    # What the loss and the monitor used: the deputy ranks, the expected false negatives, the kNN's k.
    assert (metrics["loss_k"], metrics["loss_k_end"]) == (2, 10) and metrics["knn_k"] <= 10
    assert metrics["expected_false_negatives"] > 0
    curve = (out / "live/plots/metrics/knn_top1.tsv").read_text().strip().splitlines()
    assert curve[0].split("\t")[:2] == ["step", "knn_top1"] and len(curve) == 1 + 3
    assert (out / "curves.png").stat().st_size > 10_000  # the curves as a picture, readable offline
    assert not (out / "live/plots/metrics/step.tsv").exists()  # no metric named like DVCLive's step column
    assert 0 <= metrics["random_init_linear_top1"] <= 1 and 0 <= metrics["linear_top1"] <= 1
    assert metrics["linear_gain_points"] == pytest.approx(
        100 * (metrics["linear_top1"] - metrics["random_init_linear_top1"]))
    probe = (out / "live/plots/metrics/linear_top1.tsv").read_text().strip().splitlines()
    assert probe[0].split("\t")[:2] == ["step", "linear_top1"] and len(probe) == 1 + 3


def test_backbone_loads_into_torchvision(uninterrupted):
    sd = torch.load(uninterrupted / "data/pretrain/backbone.pt", weights_only=True)
    result = torchvision.models.resnet18(weights=None).load_state_dict(sd, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys


def test_killed_run_resumes_to_the_same_weights(template, uninterrupted, tmp_path):
    project = _copy(template, tmp_path / "project")
    ckpt = project / "data/pretrain/checkpoint.pt"
    proc = _stage(project, start_new_session=True)
    deadline = time.time() + 300
    # Kill it once the first epoch's checkpoint exists (the random-init one is written at epoch 0).
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["epoch"] >= 1:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (project / "data/pretrain/backbone.pt").exists()
    out = _run(project)
    assert "resumed from" in out
    a = torch.load(project / "data/pretrain/backbone.pt", weights_only=True)
    b = torch.load(uninterrupted / "data/pretrain/backbone.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    curve = "live/plots/metrics/knn_top1.tsv"
    assert (project / "data/pretrain" / curve).read_text() == (uninterrupted / "data/pretrain" / curve).read_text()


def test_finished_run_rebuilds_outputs_dvc_deleted(uninterrupted, tmp_path):
    """DVC removes a stage's outputs (not the checkpoint, a working file) before re-running it."""
    project = _copy(uninterrupted, tmp_path / "project")
    out = project / "data/pretrain"
    expected = (out / "live/plots/metrics/linear_top1.tsv").read_text()
    shutil.rmtree(out / "live")
    (out / "backbone.pt").unlink()
    assert "resumed from" in _run(project)
    assert (out / "live/plots/metrics/linear_top1.tsv").read_text() == expected
    assert (out / "backbone.pt").exists()


def test_checkpoint_of_another_configuration_is_not_resumed_and_monitor_every_thins_the_curve(uninterrupted,
                                                                                                tmp_path):
    project = _copy(uninterrupted, tmp_path / "project")
    _write_params(project, ["loss.k=3", "train.monitor_every=2"])
    out = _run(project)
    assert "another configuration: starting from scratch" in out
    # Epochs 2 and 3 are monitored (every 2nd, and the last always), epoch 1 is not; the final figures exist.
    curve = (project / "data/pretrain/live/plots/metrics/knn_top1.tsv").read_text().strip().splitlines()
    assert [row.split("\t")[0] for row in curve[1:]] == ["1", "2"]  # DVCLive's steps are 0-based epochs
    assert json.loads((project / "data/pretrain/metrics.json").read_text())["knn_top1"] is not None


def test_nan_loss_stops_with_step_and_keeps_checkpoint(template, tmp_path):
    project = _copy(template, tmp_path / "project")
    _write_params(project, ["train.lr=1e30", "train.optimizer=sgd", "train.warmup_epochs=0"])
    proc = _stage(project)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out
    assert "loss = nan" in out.lower() or "loss = inf" in out.lower()
    assert "last good checkpoint kept" in out and "step" in out
    assert torch.load(project / "data/pretrain/checkpoint.pt", weights_only=True)["epoch"] >= 0


# DDP with multi-crop's local views (two 16 px views per image on each rank), EMP-SSL's patches and SwAV
# (Sinkhorn sums across both processes, small views); gather_negatives (negatives ranked across both
# processes) is a variant make test-all runs.
@pytest.mark.parametrize("overrides", [
    pytest.param(["loss.gather_negatives=false", "train.local_views=2"], id="triplet-multicrop"),
    pytest.param(["method=emp_ssl", "loss.patches=4", "loss.eval_patches=2"], id="emp_ssl"),
    pytest.param(["loss.gather_negatives=true"], id="triplet-gather", marks=pytest.mark.extended),
    pytest.param(["method=proto", "train.local_views=2"], id="proto-multicrop"),
])
def test_two_process_gloo_run(template, tmp_path, overrides):
    project = _copy(template, tmp_path / "project")
    _write_params(project, ["train.epochs=1", "train.local_image_size=16", *overrides])
    env = os.environ | {"PYTHONPATH": str(REPO), "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "pipeline.stages.pretrain"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((project / "data/pretrain/metrics.json").read_text())
    # 96 images, batch 16 per process, 2 processes: each rank reads its own 48-image shard -> 3 steps.
    assert metrics["steps"] == 3 and metrics["epochs"] == 1
    assert (project / "data/pretrain/backbone.pt").is_file()
    log = proc.stdout + proc.stderr
    assert log.count("random init: knn_top1") == 1  # rank 0 alone evaluates and logs
