"""Mask R-CNN construction, COCO reading errors, and the COCOeval wrapper."""
from __future__ import annotations

import json

import pytest
import torch
from pycocotools import mask as mask_utils
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from pipeline.data.errors import DatasetLayoutError
from pipeline.data.generate_coco import generate_coco
from pipeline.evaluation import coco_eval
from pipeline.evaluation.backbone_io import BackboneLoadError, load_backbone, random_backbone
from pipeline.evaluation.coco_data import load_split
from pipeline.evaluation.detection import Schedule, build_detector, freeze_backbone, geometry_for, resolve_schedule
from pipeline.models import export_backbone_state_dict

COCO_CFG = {"train_images": 6, "val_images": 4, "min_size": 48, "max_size": 64, "max_objects": 3,
            "jpeg_quality": 90}


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco") / "coco"
    generate_coco(root, COCO_CFG, seed=5, classes=["circle", "square", "star"])
    return root


def test_detector_has_trainable_bn_and_the_loaded_backbone(tmp_path):
    source, _ = random_backbone("resnet18", "imagenet", seed=11)
    with torch.no_grad():  # distinctive BN statistics: they must arrive in the detector too
        source.bn1.running_mean.uniform_(-1, 1)
    torch.save(export_backbone_state_dict(source), tmp_path / "bb.pt")
    backbone, _ = load_backbone(tmp_path / "bb.pt", "resnet18", "imagenet")
    model = build_detector(backbone, num_classes=3, train_sizes=[64, 80], test_size=80, fpn_channels=16)
    body = model.backbone.body
    for k, v in source.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(body.state_dict()[k], v), k
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) > 20 and all(m.weight.requires_grad and m.bias.requires_grad for m in bns)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.fpn.modules())  # new layers too
    assert all(p.requires_grad for p in model.parameters())
    # BN learns: one training step moves the stem's BN statistics and weights.
    model.train()
    before = body.bn1.weight.detach().clone(), body.bn1.running_mean.clone()
    images = [torch.rand(3, 64, 72), torch.rand(3, 70, 64)]
    targets = [{"boxes": torch.tensor([[5.0, 6.0, 40.0, 44.0]]), "labels": torch.tensor([2]),
                "masks": torch.zeros(1, 64, 72, dtype=torch.uint8).index_fill_(1, torch.arange(6, 44), 1)},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                "masks": torch.zeros(0, 70, 64, dtype=torch.uint8)}]  # an image without objects
    loss = sum(model(images, targets).values())
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before[0], body.bn1.weight) and not torch.equal(before[1], body.bn1.running_mean)


def _one_object_batch():
    images = [torch.rand(3, 64, 72), torch.rand(3, 70, 64)]
    targets = [{"boxes": torch.tensor([[5.0, 6.0, 40.0, 44.0]]), "labels": torch.tensor([2]),
                "masks": torch.zeros(1, 64, 72, dtype=torch.uint8).index_fill_(1, torch.arange(6, 44), 1)},
               {"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0]]), "labels": torch.tensor([1]),
                "masks": torch.zeros(1, 70, 64, dtype=torch.uint8).index_fill_(1, torch.arange(12, 60), 1)}]
    return images, targets


def test_frozen_backbone_probe_trains_only_fpn_and_heads():
    backbone, _ = random_backbone("resnet18", "imagenet", seed=3)
    with torch.no_grad():
        backbone.layer2[0].bn1.running_mean.uniform_(-1, 1)  # statistics that must survive the freeze
    reference = {k: v.clone() for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
    model = freeze_backbone(build_detector(backbone, num_classes=3, train_sizes=[64], test_size=64, fpn_channels=16))
    body = model.backbone.body
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in body.modules()) == 20  # every ResNet-18 BN
    assert not any(p.requires_grad for p in body.parameters())
    fpn_before = [p.detach().clone() for p in model.backbone.fpn.parameters()]
    with torch.no_grad():  # the frozen body computes what the backbone computed (eval-mode BN)
        x = torch.rand(2, 3, 64, 64)
        backbone.eval()
        assert torch.allclose(body(x)["3"], backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(
            backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x)))))))), atol=1e-5)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        images, targets = _one_object_batch()
        sum(model(images, targets).values()).backward()
        opt.step()
        opt.zero_grad()
    after = body.state_dict()
    kept = [k for k in reference if not k.endswith("num_batches_tracked")]  # FrozenBatchNorm2d has no counter
    assert all(torch.equal(after[k], reference[k]) for k in kept)
    assert any(not torch.equal(a, b) for a, b in zip(fpn_before, model.backbone.fpn.parameters()))


def test_wrong_architecture_checkpoint_names_keys(tmp_path):
    net, _ = random_backbone("resnet50", "imagenet", seed=0)
    torch.save(export_backbone_state_dict(net), tmp_path / "r50.pt")
    with pytest.raises(BackboneLoadError, match=r"r50.pt does not fit model.arch='resnet18'.*unexpected \d+ key"
                                                r".*layer1.0.bn3.bias.*wrong shape for \d+ key.*layer1.0.conv1.weight"):
        load_backbone(tmp_path / "r50.pt", "resnet18", "imagenet")


def test_geometry_follows_image_size():
    paper = geometry_for([640, 672, 704, 736, 768, 800], 800)
    assert paper.anchor_sizes == (32, 64, 128, 256, 512) and paper.max_size == 1333
    assert (paper.post_nms_test, paper.box_batch_per_image) == (1000, 512)  # torchvision's defaults
    small = geometry_for([96, 112, 128], 128)
    assert small.anchor_sizes == (5, 10, 20, 41, 82) and small.max_size == 214
    assert small.post_nms_test >= 100


def test_schedules():
    class C:
        schedule, iterations, batch_size, lr = "short", 90, 4, 0.02

    s = resolve_schedule(C)
    assert (s.iterations, s.batch_size, s.steps, s.warmup) == (90, 4, (60, 80), 9)
    C.schedule = "2x"
    s = resolve_schedule(C)
    assert (s.iterations, s.batch_size, s.steps) == (180_000, 16, (120_000, 160_000))
    s = Schedule(100, 16, 0.02, (60, 80), warmup=10)
    assert s.lr_at(0) == pytest.approx(2e-5) and s.lr_at(10) == pytest.approx(0.02)
    assert s.lr_at(60) == pytest.approx(0.002) and s.lr_at(99) == pytest.approx(0.0002)


def test_dataset_targets(coco_root):
    ds = load_split(coco_root, "train2017", train=False)
    assert ds.cat_to_label == {1: 1, 2: 2, 3: 3}
    image, target = ds[0]
    ann = ds.annotations(ds.image_ids[0])
    assert image.shape[0] == 3 and image.max() <= 1
    assert target["masks"].shape == (len(ann), *image.shape[1:]) and target["boxes"].shape == (len(ann), 4)
    x, y, w, h = ann[0]["bbox"]
    assert target["boxes"][0].tolist() == [x, y, x + w, y + h]
    assert int(target["masks"][0].sum()) == ann[0]["area"]  # polygons rasterise back to the visible pixels


def _rewrite(root, split, change):
    f = root / "annotations" / f"instances_{split}.json"
    data = json.loads(f.read_text())
    change(data)
    f.write_text(json.dumps(data))
    return f


def test_files_without_annotations_are_named(coco_root, tmp_path):
    import shutil

    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    f = _rewrite(root, "val2017", lambda d: d.pop("annotations"))
    with pytest.raises(DatasetLayoutError, match=rf"{f}: missing top-level key\(s\) annotations"):
        load_split(root, "val2017", train=False)
    f = _rewrite(root, "val2017", lambda d: d.update(annotations=[]))
    with pytest.raises(DatasetLayoutError, match=rf"{f}: split 'val2017' has 0 annotation\(s\).*nothing to evaluate"):
        load_split(root, "val2017", train=False)
    # Crowd-only annotations are skipped, which leaves nothing either.
    f = _rewrite(root, "train2017", lambda d: [a.update(iscrowd=1) for a in d["annotations"]])
    with pytest.raises(DatasetLayoutError, match=rf"{f}: .*none usable.*nothing to train on"):
        load_split(root, "train2017", train=True)


def test_images_without_annotations_give_empty_targets(coco_root, tmp_path):
    import shutil

    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    _rewrite(root, "train2017", lambda d: d.update(annotations=[a for a in d["annotations"] if a["image_id"] != 1]))
    ds = load_split(root, "train2017", train=True)
    _, target = ds[ds.image_ids.index(1)]
    assert target["boxes"].shape == (0, 4) and target["labels"].numel() == 0 and target["masks"].shape[0] == 0


def test_cocoeval_on_ground_truth_is_perfect(coco_root):
    ds = load_split(coco_root, "val2017", train=False)
    coco = ds.split.coco
    results = []
    for ann in coco.anns.values():
        img = coco.imgs[ann["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], img["height"], img["width"]))
        rle["counts"] = rle["counts"].decode("ascii")
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"],
                        "score": 1.0, "segmentation": rle})
    ap = coco_eval.evaluate(coco, results)
    for iou_type in ("bbox", "segm"):
        assert ap[iou_type] == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0}, iou_type
    # A shifted box loses AP: the wrapper does not always answer 1.
    moved = [{**r, "bbox": [r["bbox"][0] + r["bbox"][2] * 0.6, *r["bbox"][1:]]} for r in results]
    assert coco_eval.evaluate(coco, moved, iou_types=("bbox",))["bbox"]["AP75"] < 0.5
    assert coco_eval.evaluate(coco, []) == {t: {"AP": 0.0, "AP50": 0.0, "AP75": 0.0} for t in ("bbox", "segm")}


def test_to_coco_results_round_trip():
    out = {"boxes": torch.tensor([[2.0, 3.0, 12.0, 9.0]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9]),
           "masks": torch.zeros(1, 1, 16, 16).index_fill_(2, torch.arange(3, 9), 1.0)}
    (rec,) = coco_eval.to_coco_results(7, out, {1: 42})
    assert rec["image_id"] == 7 and rec["category_id"] == 42 and rec["bbox"] == [2.0, 3.0, 10.0, 6.0]
    assert mask_utils.area(rec["segmentation"] | {"counts": rec["segmentation"]["counts"].encode()}) == 6 * 16
