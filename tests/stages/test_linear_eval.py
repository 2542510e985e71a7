"""The linear_eval stage on a tiny classification project: both backbones, both feeding paths, clean errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipeline.config import compose, validate_params
from pipeline.data.generate_classification import generate_classification
from pipeline.data.manifest import classification_tables
from pipeline.evaluation.backbone_io import random_backbone
from pipeline.ffcv_io.datasets import convert_all
from pipeline.models import export_backbone_state_dict
from pipeline.stages import _common, linear_eval

CLS = {"classes": 3, "image_size": 32, "train_per_class": 8, "val_per_class": 4, "palette_size": 8,
       "scale": [0.5, 0.85], "max_distractors": 1, "jpeg_quality": 90}
OVERRIDES = ["data.classification.root=data/embedded/imagenet", "train.image_size=16", "eval.linear.epochs=2",
             "eval.linear.batch_size=8", "train.num_workers=1", "train.device=cpu"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("linear") / "project"
    generate_classification(root / "data/embedded/imagenet", CLS, seed=0)
    manifests = root / "data/validated/manifests"
    manifests.mkdir(parents=True)
    classification_tables(root / "data/embedded/imagenet", ("train", "val"))["classification"].to_csv(
        manifests / "classification.csv", index=False)
    params = validate_params(compose([f"data.classification.root={root / 'data/embedded/imagenet'}",
                                      *OVERRIDES[1:]]))
    convert_all(params, root / "data/beton", manifest_dir=manifests,
                names=["classification_train", "classification_val"], num_workers=1)
    (root / "data/pretrain").mkdir()
    torch.save(export_backbone_state_dict(random_backbone("resnet18", "imagenet", 123)[0]),
               root / "data/pretrain/backbone.pt")
    return root


def _run(monkeypatch, cwd: Path, *extra: str) -> None:
    params = validate_params(compose([*OVERRIDES, *extra]))
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(_common, "load_params", lambda: params)
    linear_eval.main()


@pytest.mark.parametrize("fast", ["true", "false"])
def test_outputs_for_both_backbones(project, monkeypatch, fast):
    _run(monkeypatch, project, f"eval.linear.fast_features={fast}")
    m = json.loads((project / "data/linear/metrics.json").read_text())
    for name in ("pretrained", "random_init"):
        assert 0 <= m[name]["top1"] <= m[name]["top5"] <= 1
    assert m["gain"]["top1"] == pytest.approx(m["pretrained"]["top1"] - m["random_init"]["top1"])
    assert m["protocol"]["fast_features"] is (fast == "true") and m["protocol"]["epochs"] == 2
    lines = (project / "data/linear/curve.csv").read_text().splitlines()
    assert lines[0] == "epoch,pretrained_val_top1,random_init_val_top1" and len(lines) == 3
    assert (project / "data/linear/curve.png").read_bytes()[:4] == b"\x89PNG"
    assert not list((project / "data/linear").glob("*.tmp*"))


def test_wrong_architecture_is_a_clear_error(project, monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        _run(monkeypatch, project, "model=resnet50")
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "[linear_eval] error: data/pretrain/backbone.pt does not fit model.arch='resnet50'" in err
