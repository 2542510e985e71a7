"""The reid_eval stage on a tiny SYSU-30k-layout project: outputs, determinism, and clean failures."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from pipeline.config import compose, validate_params
from pipeline.data.generate_sysu import generate_sysu
from pipeline.data.manifest import sysu_tables
from pipeline.evaluation.backbone_io import random_backbone
from pipeline.ffcv_io.datasets import convert_all
from pipeline.models import export_backbone_state_dict
from pipeline.stages import _common, reid_eval

SYSU = {"query_ids": 4, "distractors": 6, "train_bags": 2, "images_per_bag": 3, "identities_per_bag": 2,
        "height": 64, "width": 32, "jpeg_quality": 90}
OVERRIDES = ["data.sysu.root=data/embedded/sysu30k", "eval.reid.height=64", "eval.reid.width=32",
             "eval.reid.batch_size=4", "train.num_workers=1", "train.device=cpu"]


def _params(*extra: str):
    return validate_params(compose([*OVERRIDES, *extra]))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Dataset, validated manifest, train/query/gallery .beton files and a 'pretrained' resnet18 export."""
    root = tmp_path_factory.mktemp("reid") / "project"
    generate_sysu(root / "data/embedded/sysu30k", SYSU, seed=0)
    manifests = root / "data/validated/manifests"
    manifests.mkdir(parents=True)
    sysu_tables(root / "data/embedded/sysu30k")["sysu"].to_csv(manifests / "sysu.csv", index=False)
    params = validate_params(compose([f"data.sysu.root={root / 'data/embedded/sysu30k'}", *OVERRIDES[1:]]))
    convert_all(params, root / "data/beton", manifest_dir=manifests,
                names=["sysu_train", "sysu_query", "sysu_gallery"], num_workers=1)
    (root / "data/pretrain").mkdir()
    torch.save(export_backbone_state_dict(random_backbone("resnet18", "imagenet", 123)[0]),
               root / "data/pretrain/backbone.pt")
    (root / "data/supervised").mkdir()
    torch.save(export_backbone_state_dict(random_backbone("resnet18", "imagenet", 321)[0]),
               root / "data/supervised/backbone.pt")
    return root


def _run(monkeypatch, cwd: Path, *extra: str) -> None:
    params = _params(*extra)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(_common, "load_params", lambda: params)
    reid_eval.main()


def _fails(monkeypatch, capsys, cwd: Path, *extra: str) -> str:
    with pytest.raises(SystemExit) as e:
        _run(monkeypatch, cwd, *extra)
    assert e.value.code == 1
    return capsys.readouterr().err


@pytest.mark.slow  # ~30-50 s on 2 cores: two full runs, each compiling two ffcv pipelines
def test_metrics_picture_and_determinism(template, tmp_path, monkeypatch):
    project = shutil.copytree(template, tmp_path / "project")
    _run(monkeypatch, project)
    out = project / "data/reid"
    first = (out / "details.json").read_text()
    m = json.loads(first)
    for name in ("pretrained", "random_init", "supervised"):
        assert m[name]["queries"] == 4 and m[name]["gallery"] == 4 + 6 and m[name]["queries_without_match"] == 0
        assert all(0 <= m[name][k] <= 1 for k in ("rank1", "rank5", "rank10", "mAP"))
        assert m[name]["rank1"] <= m[name]["rank5"] <= m[name]["rank10"]
        assert m[name]["per_seed"]["mAP"] == [m[name]["mAP"]]  # one deterministic run
    assert m["gain"]["mAP"] == pytest.approx(m["pretrained"]["mAP"] - m["random_init"]["mAP"])
    # Retrieval is deterministic: backbones are compared query by query (4 queries).
    verdict = m["verdicts"]["supervised_vs_random_init"]["mAP"]
    assert verdict["n"] == 4 and verdict["difference"] == pytest.approx(m["supervised"]["mAP"] - m["random_init"]["mAP"])
    assert m["protocol"] == {"height": 64, "width": 32, "flip": True, "adapt_epochs": 0, "seeds": [0],
                             "compared": "per query"}
    assert (out / "top5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["details.json", "metrics.json", "top5.png"]  # no temporaries
    _run(monkeypatch, project)
    assert (out / "details.json").read_text() == first  # DVC's caching relies on a deterministic stage


def test_empty_query_set_is_a_clear_error(template, tmp_path, monkeypatch, capsys):
    project = shutil.copytree(template, tmp_path / "project")
    manifest = project / "data/validated/manifests/sysu.csv"
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    rows[rows["split"] != "query"].to_csv(manifest, index=False)
    err = _fails(monkeypatch, capsys, project)
    assert "sysu.csv: no rows with split 'query' (the query set is empty)" in err
    assert not (project / "data/reid/metrics.json").exists()


def test_checkpoint_of_another_architecture_is_a_clear_error(template, tmp_path, monkeypatch, capsys):
    project = shutil.copytree(template, tmp_path / "project")
    err = _fails(monkeypatch, capsys, project, "model=resnet50")
    assert "[reid_eval] error: data/pretrain/backbone.pt does not fit model.arch='resnet50'" in err
    assert not (project / "data/reid").exists()


# Adaptation on the 6 training images (2 bags x 3): ranks 2..3 need a batch of 4 (one step per epoch).
ADAPT = ["eval.reid.adapt_epochs=1", "eval.reid.adapt_batch_size=4", "loss.k_end=3", "eval.reid.adapt_height=32",
         "eval.reid.adapt_width=16", "model.projector_hidden=32", "model.projector_out=16",
         "model.predictor_hidden=32"]


def test_adaptation_trains_every_backbone_before_retrieval_once_per_seed(template, tmp_path, monkeypatch):
    project = shutil.copytree(template, tmp_path / "project")
    exported = torch.load(project / "data/pretrain/backbone.pt", weights_only=True)
    evaluated = []
    real_extract = reid_eval.extract

    def spy(loader, backbones, device, desc):
        evaluated.append({name: m.conv1.weight.detach().clone() for name, m in backbones.items()})
        return real_extract(loader, backbones, device, desc)

    monkeypatch.setattr(reid_eval, "extract", spy)
    _run(monkeypatch, project, *ADAPT, "eval.seeds=2")
    # Retrieval ran on the adapted weights, not on backbone.pt or the plain random init: query and gallery
    # for each of the two seeds, whose adaptations differ.
    random_conv1 = random_backbone("resnet18", "imagenet", 0)[0].conv1.weight
    assert len(evaluated) == 4
    for weights in evaluated:
        assert not torch.equal(weights["pretrained"], exported["conv1.weight"])
        assert not torch.equal(weights["random_init"], random_conv1)
    assert not torch.equal(evaluated[0]["pretrained"], evaluated[2]["pretrained"])
    m = json.loads((project / "data/reid/details.json").read_text())
    adaptation = m["protocol"].pop("adaptation")
    assert m["protocol"] == {"height": 64, "width": 32, "flip": True, "adapt_epochs": 1, "seeds": [0, 1],
                             "compared": "per seed"}
    assert m["verdicts"]["pretrained_vs_random_init"]["mAP"]["n"] == 2
    final = adaptation.pop("final_loss")
    assert set(final) == {"pretrained", "random_init", "supervised"} and all(100 < v < 300 for v in final.values())
    train = _params(*ADAPT).train  # the pretraining recipe (eval.reid.adapt_lr is null: train.lr)
    assert adaptation == {"data": "sysu_train", "epochs": 1, "steps": 1, "steps_per_epoch": 1, "batch_size": 4,
                          "height": 32, "width": 16, "lr": train.lr, "warmup_epochs": 0.5,
                          "optimizer": train.optimizer, "loss": "truncated_triplet"}
    for name in ("pretrained", "random_init", "supervised"):
        assert all(0 <= m[name][k] <= 1 for k in ("rank1", "rank5", "rank10", "mAP"))
        assert len(m[name]["per_seed"]["rank1"]) == 2
    assert sorted(p.name for p in (project / "data/reid").iterdir()) == ["details.json", "metrics.json", "top5.png"]


def test_too_few_training_images_for_one_adaptation_batch(template, tmp_path, monkeypatch, capsys):
    project = shutil.copytree(template, tmp_path / "project")
    err = _fails(monkeypatch, capsys, project, *ADAPT, "eval.reid.adapt_batch_size=8")
    assert "data/beton/sysu_train.beton: 6 training images; the adaptation loader gives 0 batch(es) per epoch, " \
           "fewer than one optimizer step of 8 x train.accumulate = 1" in err
    assert "Lower eval.reid.adapt_batch_size (now 8) or train.accumulate, or set eval.reid.adapt_epochs = 0" in err
    assert not (project / "data/reid").exists()


def test_negative_adaptation_epochs_stop_the_stage(template, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(template)
    monkeypatch.setattr(_common, "load_params", lambda: _params("eval.reid.adapt_epochs=-1"))
    with pytest.raises(SystemExit) as e:
        reid_eval.main()
    assert e.value.code == 1
    assert "eval.reid.adapt_epochs = -1: Input should be greater than or equal to 0" in capsys.readouterr().err
