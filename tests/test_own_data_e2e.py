"""Bring your own data, end to end, as a user does it: real scanned handwritten digits (scikit-learn's bundled
1,797 8x8 scans, written as an upscaled PNG ImageFolder at test time), `python -m pipeline.data add digits
--classification DIR --use`, then two experiments with different -S that both train on the digits, with the
SYSU-30k and COCO evaluations recorded as skipped (the digits come with neither). Tiny budget (train.steps).

Slow: about two minutes on 2 cores (a copy of the session's small project, two `dvc exp run`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from small_project import BIN, copy_project, git_commit, sh

pytestmark = pytest.mark.slow
STEPS = ["-S", "train.steps=4", "-S", "train.warmup_steps=1"]


def write_digits(root: Path, val_share: float = 0.2, side: int = 32) -> Path:
    """scikit-learn's digits as <root>/{train,val}/<digit>/*.png (8-bit grayscale, upscaled with bicubic)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == label))
        n_val = int(round(len(idx) * val_share))
        for split, part in (("val", idx[:n_val]), ("train", idx[n_val:])):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
                Image.fromarray(pixels, mode="L").resize((side, side), Image.BICUBIC).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def project(built_small_project, tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("own_data")
    root = copy_project(built_small_project, base / "project")
    git_commit(root, "reproduced")
    return root, write_digits(base / "digits")


def _shown(root: Path) -> dict[str, dict]:
    shown = json.loads(sh(root, "dvc", "exp", "show", "--json").stdout)
    return {r["name"]: r["data"] for base in shown for e in (base.get("experiments") or []) for r in e["revs"]
            if r.get("name")}


def test_add_then_two_experiments_both_train_on_the_digits_with_the_missing_evaluations_skipped(project):
    root, digits = project
    out = sh(root, str(BIN / "python"), "-m", "pipeline.data", "add", "digits", "--classification", str(digits),
             "--batch-size", "16", "--use").stdout
    assert "10 classes, 1438 train / 359 val images" in out and "defaults now use data=digits" in out
    staged = sh(root, "git", "diff", "--cached", "--name-only").stdout.split()
    assert {"conf/data/digits.yaml", "conf/config.yaml"} <= set(staged)

    run = sh(root, "dvc", "exp", "run", "-n", "digits-triplet", *STEPS, timeout=900)
    first = run.stdout + run.stderr
    for stage in ("validate", "convert", "pretrain", "supervised", "linear_eval", "reid_eval", "coco_finetune"):
        assert f"Running stage '{stage}'" in first, stage
    assert "not generated: the data group 'digits' reads that dataset from elsewhere" in first
    # Up to pretrain: what is tested is the data the second experiment trains on.
    second = sh(root, "dvc", "exp", "run", "-n", "digits-median", "-S", "loss=median", *STEPS, "pretrain",
                timeout=900).stdout
    assert "Running stage 'pretrain'" in second and "Running stage 'validate'" not in second, "same data: cached"

    runs = _shown(root)
    shas = set()
    for name, loss in (("digits-triplet", "smoothed"), ("digits-median", "median")):
        data = runs[name]
        params = data["params"]["params.yaml"]["data"]
        assert params["data"]["name"] == "digits" and params["data"]["classification"]["root"] == str(digits)
        assert params["loss"]["variant"] == loss
        metrics = data["metrics"]
        # which data: the validated manifest's sha256 (DVC shows no hash for a folder outside the repository)
        shas.add(metrics["data/validated/summary.json"]["data"]["manifest_sha"]["classification"])
        assert metrics["data/pretrain/metrics.json"]["data"]["steps"] == 4
    demo = json.loads(sh(root, "git", "show", "HEAD:data/validated/summary.json").stdout)
    assert len(shas) == 1 and shas != {demo["manifest_sha"]["classification"]}, (shas, demo["manifest_sha"])
    metrics = runs["digits-triplet"]["metrics"]
    for path in ("data/reid/metrics.json", "data/coco/metrics.json"):
        m = metrics[path]["data"]
        assert m["status"] == "skipped" and "the data group 'digits' provides no" in m["reason"], m
    assert metrics["data/linear/metrics.json"]["data"]["pretrained"]["top1"] > 0
    summary = json.loads((root / "data/validated/summary.json").read_text())
    assert set(summary["skipped"]) == {"sysu", "coco"}
    # the demo data generated before stay as they were: generate neither rewrote nor deleted them
    assert len(list((root / "data/embedded/imagenet/train").iterdir())) == 10
