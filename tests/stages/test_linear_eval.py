"""The supervised and linear_eval stages on a tiny classification project: the supervised reference trains and
resumes; linear evaluation scores three backbones over seeds with verdicts, both feeding paths, clean errors."""
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
from pipeline.stages import _common, linear_eval, supervised

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
    (root / "data/supervised").mkdir()
    torch.save(export_backbone_state_dict(random_backbone("resnet18", "imagenet", 321)[0]),
               root / "data/supervised/backbone.pt")  # replaced by the supervised stage's test below
    return root


def _run(monkeypatch, cwd: Path, *extra: str, stage=linear_eval) -> None:
    params = validate_params(compose([*OVERRIDES, *extra]))
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(_common, "load_params", lambda: params)
    stage.main()


def test_the_supervised_reference_learns_the_labels_and_resumes(project, monkeypatch, capsys):
    before = torch.load(project / "data/supervised/backbone.pt", weights_only=True)["conv1.weight"]
    _run(monkeypatch, project, "train.epochs=8", "train.batch_size=12", "train.lr=1e-3", stage=supervised)
    m = json.loads((project / "data/supervised/metrics.json").read_text())
    assert (m["epochs"], m["steps"]) == (8, 16)  # 24 training images, batch 12, every batch full
    assert 0.0 <= m["val_top1"] <= 1.0
    lines = (project / "data/supervised/curve.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,val_top1" and len(lines) == 9
    # The labels are learnt: the loss falls from the first epoch to the last.
    losses = [float(line.split(",")[1]) for line in lines[1:]]
    assert losses[-1] < losses[0]
    weights = torch.load(project / "data/supervised/backbone.pt", weights_only=True)
    assert "fc.weight" not in weights and not torch.equal(weights["conv1.weight"], before)
    # A re-run of the finished run resumes from its checkpoint and trains nothing more.
    capsys.readouterr()
    _run(monkeypatch, project, "train.epochs=8", "train.batch_size=12", "train.lr=1e-3", stage=supervised)
    err = capsys.readouterr().err
    assert "resumed from data/supervised/checkpoint.pt at epoch 8" in err and "epoch 8/8" not in err
    assert torch.equal(torch.load(project / "data/supervised/backbone.pt", weights_only=True)["conv1.weight"],
                       weights["conv1.weight"])


@pytest.mark.parametrize("fast", ["true", "false"])
def test_outputs_for_three_backbones_over_seeds_with_verdicts(project, monkeypatch, fast):
    _run(monkeypatch, project, f"eval.linear.fast_features={fast}", "eval.seeds=2")
    m = json.loads((project / "data/linear/details.json").read_text())
    headline = json.loads((project / "data/linear/metrics.json").read_text())
    assert "protocol" not in headline and "per_seed" not in headline["pretrained"], "the metric: results only"
    assert headline["pretrained"]["top1"] == round(m["pretrained"]["top1"], 4)
    assert headline["verdicts"]["pretrained_vs_random_init"] == {"top1": {
        "verdict": m["verdicts"]["pretrained_vs_random_init"]["top1"]["verdict"]}}
    for name in ("pretrained", "random_init", "supervised"):
        assert 0 <= m[name]["top1"] <= m[name]["top5"] <= 1
        assert len(m[name]["per_seed"]["top1"]) == 2
        assert m[name]["top1"] == pytest.approx(sum(m[name]["per_seed"]["top1"]) / 2)
        assert m[name]["top1_sd"] is not None and m[name]["top1_sd"] >= 0
    assert m["gain"]["top1"] == pytest.approx(m["pretrained"]["top1"] - m["random_init"]["top1"])
    assert set(m["verdicts"]) == {"pretrained_vs_random_init", "supervised_vs_random_init",
                                  "pretrained_vs_supervised"}
    for pair in m["verdicts"].values():
        assert pair["top1"]["verdict"] in ("ahead", "behind", "within spread") and pair["top1"]["n"] == 2
    assert m["protocol"]["seeds"] == [0, 1]
    assert m["protocol"]["fast_features"] is (fast == "true") and m["protocol"]["epochs"] == 2
    lines = (project / "data/linear/curve.csv").read_text().splitlines()
    assert lines[0] == "epoch,random_init_val_top1,pretrained_val_top1,supervised_val_top1" and len(lines) == 3
    assert (project / "data/linear/curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (project / "data/linear/embedding.png").stat().st_size > 10_000  # t-SNE panels of the 3 backbones
    assert not list((project / "data/linear").glob("*.tmp*"))


def test_wrong_architecture_is_a_clear_error(project, monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        _run(monkeypatch, project, "model=resnet50")
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "[linear_eval] error: data/pretrain/backbone.pt does not fit model.arch='resnet50'" in err
