"""Stage `coco_finetune`: Mask R-CNN (FPN) fine-tuned on COCO from the pretrained and a random-init backbone.

Both runs use the same schedule, data order and seed, so the difference is the backbone alone. Outputs in
data/coco/ (written to data/coco.partial/ and renamed when complete): metrics.json (box and mask AP, AP50,
AP75 on the val split for `pretrained` and `random_init`, and their `gain`) and predictions.png (a few val
images: ground truth, then each model's detections). Under torchrun each process trains on its shard of
every batch (SyncBatchNorm on CUDA); rank 0 evaluates and writes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..evaluation import coco_eval
from ..evaluation.backbone_io import load_backbone, random_backbone
from ..evaluation.coco_data import load_split
from ..evaluation.detection import FinetuneDiverged, build_detector, finetune, predict, resolve_schedule
from ..io_safety import AtomicDir, write_text_atomic
from ..train import distributed as dist_utils
from ..train.loop import pick_device
from ._common import StageFailed, log, run_stage

OUT = Path("data/coco")
BACKBONE = Path("data/pretrain/backbone.pt")
MANIFESTS = Path("data/validated/manifests")
PICTURE_IMAGES = 4


def run_coco(params, out: Path = OUT, backbone_path: Path = BACKBONE, manifests: Path | None = MANIFESTS) -> dict:
    """Fine-tune and evaluate both backbones; write metrics.json and predictions.png into `out`."""
    c, coco = params.data.coco, params.eval.coco
    device = pick_device("auto")
    dist = dist_utils.init_from_env(device.type)
    try:
        # The validate stage's symlink policy; val.split.coco (the ground truth below) holds what the manifests list.
        links = params.validate_.follow_external_symlinks
        train = load_split(c.root, c.train_split, manifests, train=True, follow_external_symlinks=links)
        val = load_split(c.root, c.val_split, manifests, train=False, cat_to_label=train.cat_to_label,
                         follow_external_symlinks=links)
        schedule = resolve_schedule(coco)
        log.info("%s schedule: %d iterations x %d images, lr %g (steps %s), train sizes %s, test %d; "
                 "%d train / %d val images, %d classes", coco.schedule, schedule.iterations, schedule.batch_size,
                 schedule.lr, list(schedule.steps), list(coco.train_sizes), coco.test_size, len(train), len(val),
                 len(train.cat_to_label))
        seed = params.seed if coco.seed is None else coco.seed
        keep = tuple(val.image_ids[:PICTURE_IMAGES])
        blocks, shown = {}, {}
        backbones = {"pretrained": lambda: load_backbone(backbone_path, params.model.arch, params.model.stem)[0],
                     "random_init": lambda: random_backbone(params.model.arch, params.model.stem, params.seed)[0]}
        for name, make in backbones.items():
            start = time.perf_counter()
            torch.manual_seed(seed)  # the new layers start identical in both runs
            model = build_detector(make(), len(train.cat_to_label), list(coco.train_sizes), coco.test_size,
                                   coco.fpn_channels).to(device)
            net = _wrap(model, params, dist, device)
            try:
                losses = finetune(net, train, schedule, list(coco.train_sizes), device=device, seed=seed,
                                  rank=dist.rank, world_size=dist.world_size, num_workers=coco.num_workers,
                                  desc=name)
            except FinetuneDiverged as e:
                raise StageFailed(str(e)) from None
            if dist.is_main:
                results, shown[name] = predict(model, val, coco.test_size, device=device, keep=keep)
                blocks[name] = coco_eval.evaluate(val.split.coco, results, val.image_ids)
                blocks[name]["final_loss"] = {k: round(v, 4) for k, v in sorted(losses.items())}
                log.info("%s: box AP %.4f, mask AP %.4f (%.0f s)", name, blocks[name]["bbox"]["AP"],
                         blocks[name]["segm"]["AP"], time.perf_counter() - start)
            dist_utils.barrier()
        if not dist.is_main:
            return {}
        metrics = {**blocks, "gain": {t: {k: round(blocks["pretrained"][t][k] - blocks["random_init"][t][k], 6)
                                          for k in coco_eval.STAT_NAMES} for t in coco_eval.IOU_TYPES},
                   "schedule": coco.schedule, "iterations": schedule.iterations, "batch_size": schedule.batch_size,
                   "seed": seed}
        _write(out, metrics, val, keep, shown)
        return metrics
    finally:
        dist_utils.shutdown()


def _wrap(model, params, dist, device):
    if not dist.enabled:
        return model
    if device.type == "cuda" and params.model.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # Heads can go unused in an iteration (no positive RoI on a rank -> no mask loss there).
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)


def _write(out: Path, metrics: dict, val, keep, shown) -> None:
    from ..evaluation.coco_plot import plot_predictions

    # Into `<out>.partial/`, removed on any failure; a full disk raises DiskFullError naming the file.
    with AtomicDir(out) as tmp:
        write_text_atomic(tmp / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        plot_predictions(val, keep, shown, tmp / "predictions.png")


def main() -> None:
    def body(params):
        start = time.perf_counter()
        m = run_coco(params)
        if m:
            log.info("box AP %.4f vs %.4f random init, mask AP %.4f vs %.4f (%.0f s); %s",
                     m["pretrained"]["bbox"]["AP"], m["random_init"]["bbox"]["AP"], m["pretrained"]["segm"]["AP"],
                     m["random_init"]["segm"]["AP"], time.perf_counter() - start, OUT / "metrics.json")

    run_stage("coco_finetune", body)


if __name__ == "__main__":
    main()
