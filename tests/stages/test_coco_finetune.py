"""The coco_finetune stage on a tiny project: three backbones over seeds, the gain, verdicts, the picture; clear
errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.config import compose, validate_params
from pipeline.data.generate_coco import generate_coco
from pipeline.data.manifest import coco_tables_for
from pipeline.evaluation.backbone_io import random_backbone
from pipeline.models import export_backbone_state_dict

REPO = Path(__file__).resolve().parents[2]
COCO_CFG = {"train_images": 8, "val_images": 4, "min_size": 48, "max_size": 64, "max_objects": 2,
            "jpeg_quality": 90}
OVERRIDES = ["eval.coco.iterations=3", "eval.coco.batch_size=2", "eval.coco.train_sizes=[48,64]",
             "eval.coco.test_size=64", "eval.coco.fpn_channels=16", "eval.seeds=2", "eval.coco.probe_iterations=2"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from ruamel.yaml import YAML

    project = tmp_path_factory.mktemp("coco_stage")
    generate_coco(project / "coco", COCO_CFG, seed=2, classes=["circle", "square", "star"])
    raw = compose([f"data.coco.root={project / 'coco'}", *OVERRIDES])
    validate_params(raw)
    YAML().dump(raw, project / "params.yaml")
    manifests = project / "data/validated/manifests"
    manifests.mkdir(parents=True)
    for name, df in coco_tables_for(project / "coco", ("train2017", "val2017")).items():
        df.to_csv(manifests / f"{name}.csv", index=False)
    (project / "data/pretrain").mkdir(parents=True)
    net, _ = random_backbone("resnet18", "imagenet", seed=123)  # stands in for a pretrained export
    torch.save(export_backbone_state_dict(net), project / "data/pretrain/backbone.pt")
    (project / "data/supervised").mkdir(parents=True)
    net, _ = random_backbone("resnet18", "imagenet", seed=321)  # and for the supervised reference
    torch.save(export_backbone_state_dict(net), project / "data/supervised/backbone.pt")
    return project


def _stage(project: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO), "CI": "1", "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "pipeline.stages.coco_finetune"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def test_tiny_run_writes_three_blocks_over_seeds_gain_verdicts_and_picture(project):
    proc = _stage(project)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((project / "data/coco/details.json").read_text())
    headline = json.loads((project / "data/coco/metrics.json").read_text())
    assert headline["status"] == "measured" and set(headline["pretrained"]["bbox"]) == {"AP"}
    assert set(headline["probe"]["verdicts"]["pretrained_vs_random_init"]) == {"bbox_AP"}
    for block in ("pretrained", "random_init", "supervised"):
        for iou_type in ("bbox", "segm"):
            assert set(m[block][iou_type]) == {"AP", "AP50", "AP75"}
            assert all(0.0 <= v <= 1.0 for v in m[block][iou_type].values())
        assert "loss_mask" in m[block]["final_loss"]
        per_seed = m[block]["per_seed"]["bbox_AP"]
        assert len(per_seed) == 2 and m[block]["bbox"]["AP"] == pytest.approx(sum(per_seed) / 2)
    assert m["gain"]["bbox"]["AP"] == pytest.approx(m["pretrained"]["bbox"]["AP"] - m["random_init"]["bbox"]["AP"])
    assert m["verdicts"]["supervised_vs_random_init"]["bbox_AP"]["n"] == 2
    assert (m["schedule"], m["iterations"], m["batch_size"], m["seeds"]) == ("short", 3, 2, [0, 1])
    # The frozen-backbone probe: its own three backbones over the same seeds, and its own verdicts.
    probe = m["probe"]
    assert probe["iterations"] == 2 and len(probe["supervised"]["per_seed"]["bbox_AP"]) == 2
    assert probe["verdicts"]["pretrained_vs_random_init"]["bbox_AP"]["n"] == 2
    assert probe["pretrained"]["final_loss"] != m["pretrained"]["final_loss"]
    png = (project / "data/coco/predictions.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not (project / "data/coco.partial").exists()
    assert "iteration 3/3" in proc.stderr and "supervised finetune seed 1" in proc.stderr  # plain log lines
    assert "supervised probe seed 1: box AP" in proc.stderr


def test_wrong_backbone_and_empty_val_are_one_error_line(project, tmp_path):
    import shutil

    other = tmp_path / "p"
    shutil.copytree(project, other)
    shutil.rmtree(other / "data/coco", ignore_errors=True)
    net, _ = random_backbone("resnet34", "imagenet", seed=0)
    torch.save(export_backbone_state_dict(net), other / "data/pretrain/backbone.pt")
    proc = _stage(other)
    assert proc.returncode == 1
    assert "[coco_finetune] error: data/pretrain/backbone.pt does not fit model.arch='resnet18'" in proc.stderr
    assert "unexpected" in proc.stderr and "Traceback" not in proc.stderr
    assert not (other / "data/coco").exists()

    from ruamel.yaml import YAML

    raw = YAML(typ="safe").load((project / "params.yaml").read_text())
    raw["data"]["coco"]["root"] = str(other / "coco")
    YAML().dump(raw, other / "params.yaml")
    ann = other / "coco/annotations/instances_val2017.json"
    data = json.loads(ann.read_text())
    ann.write_text(json.dumps({**data, "annotations": []}))
    proc = _stage(other)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"[coco_finetune] error: {ann}: split 'val2017' has 0 annotation(s)" in proc.stderr


def test_finetune_seed_defaults_to_the_top_level_seed_and_changes_only_the_finetuning(project, tmp_path):
    from pipeline.stages.coco_finetune import run_coco

    def run(*overrides):
        params = validate_params(compose([f"data.coco.root={project / 'coco'}", *OVERRIDES, "eval.seeds=1",
                                          "eval.coco.probe_iterations=0", *overrides]))
        return run_coco(params, out=tmp_path / "_".join(overrides or ("default",)),
                        backbone_path=project / "data/pretrain/backbone.pt",
                        manifests=project / "data/validated/manifests",
                        supervised_path=project / "data/supervised/backbone.pt")

    default, seed5, top5 = run(), run("eval.coco.seed=5"), run("seed=5")
    assert (default["seeds"], seed5["seeds"], top5["seeds"]) == ([0], [5], [5])
    assert "probe" not in default  # probe_iterations 0: no probe
    # Another fine-tuning seed is another run (heads, data order) ...
    assert seed5["pretrained"]["final_loss"] != default["pretrained"]["final_loss"]
    # ... while the random-init backbone stays the top-level seed's: seed=5 also changes that backbone.
    assert seed5["pretrained"] == top5["pretrained"]
    assert seed5["random_init"] != top5["random_init"]
