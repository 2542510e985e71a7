"""Quarantine applies to COCO evaluation too (issue 12, case 3): the ground truth COCOeval scores against
holds exactly the val images and annotations of the validated manifest, not those of the original json."""
from __future__ import annotations

import pytest
import torch
from pycocotools import mask as mask_utils

from pipeline.data.generate_coco import generate_coco
from pipeline.data.manifest import coco_tables_for
from pipeline.data.readers_coco import read_coco
from pipeline.evaluation import coco_eval
from pipeline.evaluation.coco_data import load_split

COCO_CFG = {"train_images": 4, "val_images": 5, "min_size": 48, "max_size": 64, "max_objects": 3,
            "jpeg_quality": 90}
SPLITS = ("train2017", "val2017")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A tiny COCO dataset and manifests from which one val image (with its annotations) and one
    annotation of another val image were quarantined."""
    base = tmp_path_factory.mktemp("quarantine_gt")
    root = base / "coco"
    generate_coco(root, COCO_CFG, seed=3, classes=["circle", "square", "star"])
    tables = coco_tables_for(root, SPLITS)
    images, anns = tables["coco_images"], tables["coco_annotations"]
    val_anns = anns[anns["split"] == "val2017"]
    per_image = val_anns.groupby("image_id").size()
    dropped_image = int(per_image.index[0])
    dropped_ann = int(val_anns[val_anns["image_id"] == int(per_image.index[-1])]["ann_id"].iloc[0])
    images = images[~((images["split"] == "val2017") & (images["image_id"] == dropped_image))]
    gone = (anns["image_id"] == dropped_image) | (anns["ann_id"] == dropped_ann)
    anns = anns[~((anns["split"] == "val2017") & gone)]
    manifests = base / "manifests"
    manifests.mkdir()
    images.to_csv(manifests / "coco_images.csv", index=False)
    anns.to_csv(manifests / "coco_annotations.csv", index=False)
    listed_images = set(images.loc[images["split"] == "val2017", "image_id"].astype(int))
    listed_anns = set(anns.loc[anns["split"] == "val2017", "ann_id"].astype(int))
    assert dropped_image not in listed_images and dropped_ann not in listed_anns and listed_anns
    perfect = _perfect(read_coco(root, "val2017").coco, listed_anns)
    return root, manifests, listed_images, listed_anns, perfect


@pytest.fixture
def spy(monkeypatch):
    """What every COCOeval run scored against: (image ids, ground-truth annotation ids)."""
    seen = []

    class Spy(coco_eval.COCOeval):
        def evaluate(self):
            super().evaluate()
            seen.append((set(self.params.imgIds), {g["id"] for gts in self._gts.values() for g in gts}))

    monkeypatch.setattr(coco_eval, "COCOeval", Spy)
    return seen


def _perfect(coco, ann_ids) -> list[dict]:
    """Detections equal to the given ground-truth annotations (box and polygon mask), score 1."""
    out = []
    for a in (coco.anns[i] for i in sorted(ann_ids)):
        img = coco.imgs[a["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], img["height"], img["width"]))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0,
                    "segmentation": rle})
    return out


def test_ground_truth_is_the_manifest(dataset, spy):
    root, manifests, listed_images, listed_anns, perfect = dataset
    val = load_split(root, "val2017", manifests, train=False)
    assert set(val.image_ids) == listed_images
    assert set(val.split.coco.imgs) == listed_images and set(val.split.coco.anns) == listed_anns
    # The stage's call (pipeline/stages/coco_finetune.py): detections equal to the listed annotations are perfect.
    ap = coco_eval.evaluate(val.split.coco, perfect, val.image_ids)
    assert ap == {t: {"AP": 1.0, "AP50": 1.0, "AP75": 1.0} for t in ("bbox", "segm")}
    assert spy and all(seen == (listed_images, listed_anns) for seen in spy)
    assert all(isinstance(a["segmentation"], list) for a in val.split.coco.anns.values())  # not turned into RLEs


def test_coco_finetune_stage_scores_against_the_manifest(dataset, spy, tmp_path, monkeypatch):
    """run_coco end to end (fine-tuning and prediction stubbed): COCOeval's ground truth is the manifest's."""
    from pipeline.config import compose, validate_params
    from pipeline.evaluation.backbone_io import random_backbone
    from pipeline.models import export_backbone_state_dict
    from pipeline.stages import coco_finetune

    root, manifests, listed_images, listed_anns, perfect = dataset
    net, _ = random_backbone("resnet18", "imagenet", seed=1)
    torch.save(export_backbone_state_dict(net), tmp_path / "backbone.pt")

    def predict(model, dataset, test_size, *, device, keep=(), **_):
        return perfect, {}

    monkeypatch.setattr(coco_finetune, "finetune", lambda *a, **k: {"loss": 0.0})
    monkeypatch.setattr(coco_finetune, "predict", predict)
    monkeypatch.setattr(coco_finetune, "_write", lambda *a, **k: None)
    params = validate_params(compose([f"data.coco.root={root}", "eval.coco.iterations=1", "eval.coco.batch_size=2",
                                      "eval.coco.train_sizes=[48]", "eval.coco.test_size=64",
                                      "eval.coco.fpn_channels=16", "eval.seeds=1", "eval.coco.probe_iterations=1"]))
    metrics = coco_finetune.run_coco(params, out=tmp_path / "out", backbone_path=tmp_path / "backbone.pt",
                                     manifests=manifests, supervised_path=tmp_path / "backbone.pt")
    assert len(spy) == 12  # (fine-tuning, probe) x three backbones x (bbox, segm)
    assert all(seen == (listed_images, listed_anns) for seen in spy)
    assert metrics["pretrained"]["bbox"]["AP"] == metrics["random_init"]["segm"]["AP"] == 1.0
    assert metrics["probe"]["supervised"]["bbox"]["AP"] == 1.0
