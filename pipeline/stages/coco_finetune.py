"""Stage `coco_finetune`: Mask R-CNN (FPN) fine-tuned on COCO from the pretrained backbone, a random-init one and
the supervised reference, once per seed in eval.seeds (from eval.coco.seed, null: the top-level seed).

For a seed, every backbone gets the same schedule, data order and new-layer initialisation, so the difference
is the backbone alone; backbones are compared seed by seed (docs/evaluation.md). With eval.coco.probe_iterations
> 0, each backbone also gets the frozen-backbone probe (FPN and heads trained on the fixed backbone), reported
under "probe" with its own verdicts. Outputs in data/coco/
(written to data/coco.partial/ and renamed when complete): metrics.json (mean box and mask AP, AP50, AP75 on
the val split per backbone, their sd and per-seed values, the `gain`, a verdict per backbone pair, the share
of the supervised gain recovered) and predictions.png (a few val images: ground truth, then each model's
detections, first seed). Under torchrun each process trains on its shard of
every batch (SyncBatchNorm on CUDA); rank 0 evaluates and writes.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..evaluation import coco_eval
from ..evaluation.backbone_io import load_backbone, random_backbone
from ..evaluation.compare import backbone_block, compare
from ..evaluation.coco_data import load_split
from ..evaluation.detection import (
    FinetuneDiverged, build_detector, finetune, freeze_backbone, predict, resolve_schedule,
)
from ..io_safety import AtomicDir
from ..train import distributed as dist_utils
from ..train.loop import pick_device
from ._common import StageFailed, eval_seeds, log, run_stage, skipped, write_results

OUT = Path("data/coco")
# metrics.json: box and mask AP per backbone (fine-tuned; box AP of the frozen probe), gains, verdicts, status;
# details.json: AP50/75 and by size, spreads, per-seed values, final losses, the schedule.
HEADLINE = ("*.bbox.AP", "random_init.segm.AP", "pretrained.segm.AP", "supervised.segm.AP", "gain.segm.AP",
            "*verdicts.*.bbox_AP.verdict", "verdicts.*.segm_AP.verdict", "status")
BACKBONE = Path("data/pretrain/backbone.pt")
SUPERVISED = Path("data/supervised/backbone.pt")
MANIFESTS = Path("data/validated/manifests")
PICTURE_IMAGES = 4


def run_coco(params, out: Path = OUT, backbone_path: Path = BACKBONE, manifests: Path | None = MANIFESTS,
             supervised_path: Path = SUPERVISED) -> dict:
    """Fine-tune and evaluate the three backbones once per seed; write metrics.json and predictions.png into `out`."""
    c, coco = params.data.coco, params.eval.coco
    device = pick_device("auto")
    dist = dist_utils.init_from_env(device.type)
    try:
        # The validate stage's symlink policy; val.split.coco (the ground truth below) holds what the manifests list.
        links = params.validate_.follow_external_symlinks
        train = load_split(c.root, c.train_split, manifests, train=True, follow_external_symlinks=links)
        val = load_split(c.root, c.val_split, manifests, train=False, cat_to_label=train.cat_to_label,
                         follow_external_symlinks=links)
        # protocol -> (schedule, frozen backbone); full fine-tuning is the paper's protocol.
        protocols = {"finetune": (resolve_schedule(coco), False)}
        if coco.probe_iterations > 0:
            protocols["probe"] = (resolve_schedule(coco, probe=True), True)
        for protocol, (schedule, _) in protocols.items():
            log.info("%s: %s schedule, %d iterations x %d images, lr %g (steps %s), train sizes %s, test %d; "
                     "%d train / %d val images, %d classes", protocol, coco.schedule, schedule.iterations,
                     schedule.batch_size, schedule.lr, list(schedule.steps), list(coco.train_sizes), coco.test_size,
                     len(train), len(val), len(train.cat_to_label))
        seeds = eval_seeds(params, params.seed if coco.seed is None else coco.seed)
        keep = tuple(val.image_ids[:PICTURE_IMAGES])
        runs, shown = {protocol: {} for protocol in protocols}, {}
        backbones = {"random_init": lambda: random_backbone(params.model.arch, params.model.stem, params.seed)[0],
                     "pretrained": lambda: load_backbone(backbone_path, params.model.arch, params.model.stem)[0],
                     "supervised": lambda: load_backbone(supervised_path, params.model.arch, params.model.stem)[0]}
        for seed in seeds:
            for protocol, (schedule, frozen) in protocols.items():
                for name, make in backbones.items():
                    start, desc = time.perf_counter(), f"{name} {protocol} seed {seed}"
                    torch.manual_seed(seed)  # the new layers start identical for every backbone
                    model = build_detector(make(), len(train.cat_to_label), list(coco.train_sizes), coco.test_size,
                                           coco.fpn_channels)
                    model = (freeze_backbone(model) if frozen else model).to(device)
                    net = _wrap(model, params, dist, device)
                    try:
                        losses = finetune(net, train, schedule, list(coco.train_sizes), device=device, seed=seed,
                                          rank=dist.rank, world_size=dist.world_size, num_workers=coco.num_workers,
                                          desc=desc)
                    except FinetuneDiverged as e:
                        raise StageFailed(str(e)) from None
                    if dist.is_main:
                        results, picture = predict(model, val, coco.test_size, device=device, keep=keep)
                        if protocol == "finetune":
                            shown.setdefault(name, picture)  # the first seed's fine-tuned detections
                        block = coco_eval.evaluate(val.split.coco, results, val.image_ids)
                        block["final_loss"] = {k: round(v, 4) for k, v in sorted(losses.items())}
                        runs[protocol].setdefault(name, []).append(block)
                        log.info("%s: box AP %.4f, mask AP %.4f (%.0f s)", desc, block["bbox"]["AP"],
                                 block["segm"]["AP"], time.perf_counter() - start)
                    dist_utils.barrier()
        if not dist.is_main:
            return {}
        schedule = protocols["finetune"][0]
        metrics = summarise_runs(runs["finetune"])
        metrics.update({"status": "measured", "schedule": coco.schedule, "iterations": schedule.iterations,
                        "batch_size": schedule.batch_size, "seeds": seeds})
        if "probe" in runs:
            metrics["probe"] = {**summarise_runs(runs["probe"]), "iterations": protocols["probe"][0].iterations}
        _write(out, metrics, val, keep, shown)
        return metrics
    finally:
        dist_utils.shutdown()


def summarise_runs(runs: dict[str, list[dict]]) -> dict:
    """Per backbone: the mean box / mask AP, AP50, AP75 in COCO's nesting, their sd and per-seed values, the
    last seed's final losses; the gain, and the verdicts over the seeds (keys `bbox_AP`, `segm_AP`, ...)."""
    per_seed = {name: {f"{t}_{k}": [r[t][k] for r in rs] for t in coco_eval.IOU_TYPES for k in coco_eval.STAT_NAMES}
                for name, rs in runs.items()}
    metrics = {}
    for name, values in per_seed.items():
        flat = backbone_block(values)
        metrics[name] = {t: {k: flat[f"{t}_{k}"] for k in coco_eval.STAT_NAMES} for t in coco_eval.IOU_TYPES}
        metrics[name]["sd"] = {key: flat[f"{key}_sd"] for key in values}
        metrics[name]["per_seed"] = flat["per_seed"]
        metrics[name]["final_loss"] = runs[name][-1]["final_loss"]
    metrics["gain"] = {t: {k: round(metrics["pretrained"][t][k] - metrics["random_init"][t][k], 6)
                           for k in coco_eval.STAT_NAMES} for t in coco_eval.IOU_TYPES}
    metrics.update(compare(per_seed))
    return metrics


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
        write_results(tmp, metrics, HEADLINE)
        plot_predictions(val, keep, shown, tmp / "predictions.png")


def main() -> None:
    def body(params):
        if skipped("coco", params, OUT / "metrics.json", OUT / "predictions.png"):
            return
        start = time.perf_counter()
        m = run_coco(params)
        if m:
            log.info("box AP %.4f vs %.4f random init, mask AP %.4f vs %.4f (%.0f s); %s",
                     m["pretrained"]["bbox"]["AP"], m["random_init"]["bbox"]["AP"], m["pretrained"]["segm"]["AP"],
                     m["random_init"]["segm"]["AP"], time.perf_counter() - start, OUT / "metrics.json")
            if "probe" in m:
                p = m["probe"]
                log.info("frozen-backbone probe: box AP %.4f pretrained, %.4f random init, %.4f supervised",
                         p["pretrained"]["bbox"]["AP"], p["random_init"]["bbox"]["AP"], p["supervised"]["bbox"]["AP"])

    run_stage("coco_finetune", body)


if __name__ == "__main__":
    main()
