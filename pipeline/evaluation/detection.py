"""Mask R-CNN (torchvision, FPN) on a self-supervised ResNet: build, fine-tune on COCO, predict.

The MoCo detection protocol (docs/method.md section 4) fine-tunes every layer with synchronised BatchNorm in
the backbone and the new layers. torchvision offers the FPN variant, not detectron2's R50-C4, so the
backbone is our own torchvision ResNet (plain, trainable nn.BatchNorm2d: not torchvision's
FrozenBatchNorm2d, no frozen stages) wrapped in BackboneWithFPN; FPN and mask head get BatchNorm too
(SyncBatchNorm under DDP on CUDA).

The frozen-backbone probe (`freeze_backbone`) trains only the FPN and the heads on a fixed backbone, its
BatchNorm statistics included: a detection analogue of the linear probe, which shows what the backbone's
features hold after a short schedule where full fine-tuning lets every backbone catch up
(docs/evaluation.md, "Sensitive evaluations").
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ..progress import show_progress, track
from .coco_data import CocoDetection, IterationSampler, collate

log = logging.getLogger("pipeline")

# The reference geometry the torchvision / detectron2 defaults were tuned for: COCO test short side 800,
# long side capped at 1333, anchors 32..512 on the five FPN levels (P2..P6, strides 4..64).
REF_SIZE, REF_MAX_SIZE, REF_ANCHORS = 800, 1333, (32, 64, 128, 256, 512)
SCHEDULES = {"1x": 90_000, "2x": 180_000}  # detectron2 iterations at 16 images per batch
STEP_FRACTIONS = (2 / 3, 8 / 9)  # lr x0.1 at 60k/80k of 90k and 120k/160k of 180k
PAPER_BATCH = 16
WEIGHT_DECAY = 1e-4  # detectron2's default; 0 on normalisation parameters (WEIGHT_DECAY_NORM = 0)
MOMENTUM = 0.9


class FinetuneDiverged(RuntimeError):
    """The detection loss became NaN or infinite."""


# --- geometry -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """Sizes that must follow the images in use (see `geometry_for`)."""

    max_size: int
    anchor_sizes: tuple[int, ...]
    pre_nms_train: int
    post_nms_train: int
    pre_nms_test: int
    post_nms_test: int
    box_batch_per_image: int


def geometry_for(train_sizes: list[int], test_size: int) -> Geometry:
    """Transform, anchor and proposal sizes for images whose shorter side is resized to these sizes.

    - max_size keeps COCO's 1333/800 long-side cap relative to the largest short side in use
      (torchvision's default 1333 would let nothing be capped, but its default min_size 800 would blow a
      96-128 px embedded image up 7x: the transform's min_size is set to our sizes instead).
    - Anchors scale with the image: torchvision's 32..512 at an 800 px short side become
      round(32..512 x size/800). At the paper's 800 px that is exactly the default; at the embedded
      128 px it is 5, 10, 20, 41, 82 px, which brackets the embedded objects (16..72 px at their native
      96-128 px, i.e. about 15-55 % of the image side, like medium/large COCO objects), with three aspect
      ratios each. Fixed 32..512 anchors would leave every embedded object below the smallest anchor of
      its level's stride and put most anchors outside the image.
    - Proposal counts and the sampled RoIs per image scale with the image area (the number of anchor
      positions), floored so that at least 100 proposals reach the heads at test time (COCOeval scores up
      to 100 detections per image); at 800 px they are torchvision's defaults.
    """
    largest = max(max(train_sizes), test_size)
    rel = test_size / REF_SIZE
    area = min(1.0, max(0.1, rel * rel))

    def scaled(n: int, floor: int) -> int:
        return max(floor, int(round(n * area)))

    return Geometry(
        max_size=int(math.ceil(largest * REF_MAX_SIZE / REF_SIZE)),
        anchor_sizes=tuple(max(4, int(round(a * rel))) for a in REF_ANCHORS),
        pre_nms_train=scaled(2000, 200), post_nms_train=scaled(2000, 200),
        pre_nms_test=scaled(1000, 100), post_nms_test=scaled(1000, 100),
        box_batch_per_image=scaled(512, 64),
    )


# --- model ----------------------------------------------------------------------------------------
def build_detector(backbone: nn.Module, num_classes: int, train_sizes: list[int], test_size: int,
                   fpn_channels: int = 256) -> MaskRCNN:
    """Mask R-CNN with FPN on a torchvision ResNet (as built by pipeline.models.build_backbone).

    num_classes excludes the background. Every parameter is trainable and every normalisation layer is a
    plain nn.BatchNorm2d. fpn_channels is the width of the FPN and of the heads (torchvision: 256; the box
    head's hidden layer is 4x that, i.e. 1024 at 256).
    """
    if not hasattr(backbone, "layer4") or not hasattr(backbone, "inplanes"):
        raise TypeError(f"expected a torchvision ResNet backbone, got {type(backbone).__name__}")
    stage2 = backbone.inplanes // 8  # 64 for BasicBlock ResNets, 256 for Bottleneck ones
    fpn = BackboneWithFPN(
        backbone, return_layers={f"layer{k}": str(k - 1) for k in range(1, 5)},
        in_channels_list=[stage2 * 2 ** i for i in range(4)], out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(), norm_layer=nn.BatchNorm2d)
    geo = geometry_for(train_sizes, test_size)
    anchors = AnchorGenerator(tuple((a,) for a in geo.anchor_sizes), ((0.5, 1.0, 2.0),) * len(geo.anchor_sizes))
    rep = 4 * fpn_channels
    model = MaskRCNN(
        fpn, num_classes=None, min_size=tuple(train_sizes), max_size=geo.max_size,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=geo.pre_nms_train, rpn_post_nms_top_n_train=geo.post_nms_train,
        rpn_pre_nms_top_n_test=geo.pre_nms_test, rpn_post_nms_top_n_test=geo.post_nms_test,
        box_batch_size_per_image=geo.box_batch_per_image,
        box_head=TwoMLPHead(fpn_channels * 7 * 7, rep), box_predictor=FastRCNNPredictor(rep, num_classes + 1),
        mask_head=MaskRCNNHeads(fpn_channels, [fpn_channels] * 4, 1, norm_layer=nn.BatchNorm2d),
        mask_predictor=MaskRCNNPredictor(fpn_channels, fpn_channels, num_classes + 1),
    )
    model.requires_grad_(True)
    return model


def freeze_backbone(model: MaskRCNN) -> MaskRCNN:
    """Fix the ResNet inside `model` (weights and BatchNorm statistics); the FPN and the heads still train."""
    body = model.backbone.body
    for name, module in list(body.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(module, key).detach())
            parent, _, leaf = name.rpartition(".")
            setattr(body.get_submodule(parent) if parent else body, leaf, frozen)
    body.requires_grad_(False)
    return model


def set_image_size(model: nn.Module, size: int) -> None:
    """Resize shorter sides to `size` from now on (training: chosen per iteration; evaluation: test size)."""
    module = model.module if hasattr(model, "module") else model
    module.transform.min_size = (int(size),)


# --- schedule -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    iterations: int
    batch_size: int  # images per iteration over all processes
    lr: float
    steps: tuple[int, ...]
    warmup: int

    def lr_at(self, it: int) -> float:
        """Linear warm-up from lr/1000 (detectron2's factor) then x0.1 at each step."""
        lr = self.lr * 0.1 ** sum(it >= s for s in self.steps)
        if it < self.warmup:
            alpha = it / self.warmup
            lr *= 0.001 * (1 - alpha) + alpha
        return lr


def resolve_schedule(coco, probe: bool = False) -> Schedule:
    """eval.coco -> Schedule. 1x / 2x: detectron2's 90k / 180k iterations at 16 images (eval.coco.iterations
    and batch_size are then not used); short: eval.coco.iterations at eval.coco.batch_size. LR steps at
    2/3 and 8/9 of the run either way; eval.coco.lr is the base LR at that batch (paper: 0.02 at 16).
    probe: the frozen-backbone probe's schedule, eval.coco.probe_iterations at the same batch and LR."""
    if coco.schedule in SCHEDULES:
        iterations, batch = SCHEDULES[coco.schedule], PAPER_BATCH
    else:
        iterations, batch = coco.iterations, coco.batch_size
    if probe:
        iterations = coco.probe_iterations
    steps = tuple(int(round(f * iterations)) for f in STEP_FRACTIONS)
    return Schedule(iterations, batch, coco.lr, steps, warmup=min(1000, max(1, iterations // 10)))


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    norm = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)
    decay, no_decay = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (no_decay if isinstance(module, norm) else decay).append(p)
    return torch.optim.SGD([{"params": decay, "weight_decay": WEIGHT_DECAY},
                            {"params": no_decay, "weight_decay": 0.0}], lr=lr, momentum=MOMENTUM)


# --- training and prediction ----------------------------------------------------------------------
def finetune(model: nn.Module, dataset: CocoDetection, schedule: Schedule, train_sizes: list[int], *,
             device: torch.device, seed: int, rank: int = 0, world_size: int = 1, num_workers: int = 0,
             desc: str = "coco", log_every: int = 50) -> dict[str, float]:
    """Iteration-based SGD over `dataset`; returns the mean of each loss over the last 10 % of the run.

    The shorter side of each iteration's images is drawn from `train_sizes` (same draw on every rank).
    """
    if schedule.batch_size % world_size:
        raise ValueError(f"batch of {schedule.batch_size} images does not split over {world_size} processes")
    per_rank = schedule.batch_size // world_size
    sampler = IterationSampler(len(dataset), schedule.iterations * per_rank, seed, rank, world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=per_rank, sampler=sampler, collate_fn=collate,
                                         num_workers=num_workers, persistent_workers=False)
    opt = make_optimizer(model, schedule.lr)
    size_rng = torch.Generator().manual_seed(seed)
    model.train()
    tail_from, tail, start = int(schedule.iterations * 0.9), {}, time.perf_counter()
    torch.manual_seed(seed + rank)  # the random flips
    for it, (images, targets) in enumerate(track(loader, desc, total=schedule.iterations, unit="iterations",
                                                 enabled=rank == 0)):
        set_image_size(model, train_sizes[int(torch.randint(len(train_sizes), (), generator=size_rng))])
        for group in opt.param_groups:
            group["lr"] = schedule.lr_at(it)
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FinetuneDiverged(f"{desc}: loss is {loss.item()} at iteration {it} (lr {schedule.lr_at(it):.4g});"
                                   f" parts: {', '.join(f'{k} {v.item():.4g}' for k, v in losses.items())}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it >= tail_from:
            for k, v in losses.items():
                tail.setdefault(k, []).append(v.item())
        if rank == 0 and not show_progress() and ((it + 1) % log_every == 0 or it + 1 == schedule.iterations):
            log.info("%s: iteration %d/%d loss %.3f lr %.4g (%.1f s)", desc, it + 1, schedule.iterations,
                     loss.item(), schedule.lr_at(it), time.perf_counter() - start)
    return {k: sum(v) / len(v) for k, v in tail.items()}


@torch.no_grad()
def predict(model: nn.Module, dataset: CocoDetection, test_size: int, *, device: torch.device,
            batch_size: int = 8, keep: tuple[int, ...] = ()) -> tuple[list[dict], dict[int, dict]]:
    """Run the detector over every image: (COCO result records, raw outputs of the image ids in `keep`)."""
    from .coco_eval import to_coco_results

    module = model.module if hasattr(model, "module") else model
    module.eval()
    set_image_size(module, test_size)
    label_to_cat, results, kept = dataset.label_to_cat, [], {}
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(start + batch_size, len(dataset)))
        chunk = [dataset.image_ids[i] for i in idx]
        images = [dataset[i][0].to(device) for i in idx]
        for image_id, out in zip(chunk, module(images)):
            out = {k: v.cpu() for k, v in out.items()}
            results += to_coco_results(image_id, out, label_to_cat)
            if image_id in keep:
                kept[image_id] = out
    return results, kept
