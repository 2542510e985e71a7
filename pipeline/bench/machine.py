"""The machine's fp32 matmul peak, and how much of it the pipeline's compute-heavy steps use.

    python -m pipeline.bench machine [--steps 10] [--warmup 2] [--reid-steps 2] [--detection-steps 4]
                                     [--peak-size 2048] [--no-before]

Measures, on the device the stages pick (params.yaml's train.device; CPU threads = all cores, as the stages
set them):
  peak        the best of a few timings of a large fp32 `torch.mm` (n x n, 2 n^3 FLOPs each) after warm-up
  pretrain    the pretrain stage's own step (`Pretrainer._step`: two-view online forward + backward, EMA
              target forward, optimizer and EMA update) on batches of the real FFCV two-view loader with
              its augmentations, params.yaml's model/loss/train settings (as `python -m pipeline.bench train`)
  eval        linear_eval's (and the pretrain monitor's) feature extraction: `extract_features`, the
              backbone in eval mode over the classification evaluation loader (eval.linear.batch_size)
  reid        reid_eval's feature extraction: its `extract` over the sysu_gallery evaluation loader
              (eval.reid height x width; image + flipped image per gallery image, channels_last)
  detection   coco_finetune's training iterations: `finetune` of the Mask R-CNN `build_detector` builds,
              with eval.coco's sizes, batch and data (the coco train split the validate stage listed)
Every model is the random-init backbone (`random_backbone`): the same FLOPs as the pretrained one.
For each X in pretrain, eval, reid, detection the JSON holds X_gflop_per_image (FLOPs of one step, counted
by `torch.utils.flop_counter.FlopCounterMode`, divided by the images in it), X_img_s (timed steps after
warm-up, data loading included, as the stage runs them), X_gflop_s = X_gflop_per_image * X_img_s and
X_efficiency = X_gflop_s / peak_gflop_s; also cpu_model, cores, torch_threads, peak_gflop_s, the sizes
used, and load_avg_1min (os.getloadavg at the end, and _start) so that a run on a busy machine shows:
the peak is measured once, first, so a machine that is busy then and not later (or the reverse) skews
every efficiency (one run next to a test suite gave reid 102 % and pretraining 5 %; quiet: 55 % and 37 %).

What is counted: FlopCounterMode counts the matrix products and convolutions (aten mm / addmm / bmm /
baddbmm / convolution and their backward, attention): the work the matmul peak measures. Everything else
counts zero: BatchNorm, activations, pooling, interpolation, the loader's augmentations, the loss's
sorting, the optimizer and the EMA update, and torchvision's detection ops (roi_align, nms, anchor and
box arithmetic, mask pasting). Efficiency is therefore "useful GEMM/conv FLOP/s over the GEMM peak", and
the time the uncounted work takes shows up as a lower efficiency.

Then (unless --no-before) the same pretrain, reid and detection steps with the default of commit 47c0659,
before the budget was re-designed (BEFORE below: its batch, view size, reid and detection sizes), in the
same run: before_pretrain_img_s etc., and X_speedup_vs_before = X_img_s / before_X_img_s (work per image
changed too: compare the gflop_per_image figures).

Needs data/beton/ (`dvc repro convert`) and the coco data with the validate stage's manifests (`dvc repro
validate`). Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import load_params
from ..evaluation.backbone_io import random_backbone
from ..evaluation.detection import build_detector, finetune, resolve_schedule
from ..evaluation.knn import extract_features
from ..train.distributed import DistInfo
from ..train.loop import Pretrainer, pick_device


def _say(message: str) -> None:
    print(f"[bench machine] {message}", flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    """/proc/cpuinfo's 'model name' (Linux), else platform.processor(), else 'unknown'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def matmul_peak(n: int = 2048, device: torch.device | str = "cpu", reps: int = 4, rounds: int = 3,
                dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of an n x n torch.mm (2 n^3 FLOPs; fp32 unless `dtype`), best of `rounds` timings of `reps` products."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(2):  # warm-up: thread pool, caches, clocks
        torch.mm(a, b, out=out)
    _sync(device)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        _sync(device)
        best = min(best, (time.perf_counter() - start) / reps)
    return 2 * n ** 3 / best / 1e9


def count_flops(fn: Callable, *args, **kwargs):
    """(fn's result, the FLOPs FlopCounterMode counted while it ran: matmuls and convolutions, forward and
    backward; see the module docstring for what it does not count)."""
    with FlopCounterMode(display=False) as counter:
        result = fn(*args, **kwargs)
    return result, counter.get_total_flops()


def figures(prefix: str, flops: float, flop_images: int, img_s: float, peak_gflop_s: float) -> dict:
    """The four figures of one step kind, from the FLOPs counted over `flop_images` images and its rate."""
    per_image = flops / max(flop_images, 1) / 1e9
    gflop_s = per_image * img_s
    return {f"{prefix}_gflop_per_image": round(per_image, 4), f"{prefix}_img_s": round(img_s, 1),
            f"{prefix}_gflop_s": round(gflop_s, 2),
            f"{prefix}_efficiency": round(gflop_s / peak_gflop_s, 4) if peak_gflop_s > 0 else None}


def _cycle(loader: Iterable):
    """The loader's batches, epoch after epoch (a few steps may need more batches than one epoch has)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader yields no batches")


# --- the steps --------------------------------------------------------------------------------------
def pretrain_step(params, loader, device: torch.device, steps: int, warmup: int) -> dict:
    """Pretrainer._step on the loader's batches: counted over one batch, timed over `steps` after `warmup`.

    `loader` is the two-view loader (or any sized iterable of (view1, view2, labels) batches).
    """
    # The checkpoint path the trainer knows about is never written: the benchmark never saves.
    trainer = Pretrainer(params, Path(tempfile.gettempdir()) / "bench-machine-unused", loader,
                         DistInfo(), device)
    accumulate = params.train.accumulate
    batches, sums = _cycle(loader), {"loss": 0.0, "n": 0}
    try:
        for i in range(warmup):
            trainer._step(next(batches), i, sums)
        batch = next(batches)
        # The micro-batch that ends an accumulation: the counted step includes the optimizer and EMA update.
        _, flops = count_flops(trainer._step, batch, accumulate - 1, sums)
        flop_images, images = len(batch[0]), 0
        _sync(device)
        start = time.perf_counter()
        for i in range(steps):
            batch = next(batches)
            trainer._step(batch, i, sums)
            images += len(batch[0])
        _sync(device)
        seconds = time.perf_counter() - start
    finally:
        batches.close()  # stops the loader's threads
    return {"flops": flops, "flop_images": flop_images, "img_s": images / seconds}


def eval_extraction(backbone: torch.nn.Module, loader, device: torch.device, steps: int, warmup: int) -> dict:
    """linear_eval's extract_features (eval mode, no grad) over `steps` batches of (images, labels)."""
    backbone = backbone.to(device)
    batches = _cycle(loader)
    try:
        if warmup:
            extract_features(backbone, islice(batches, warmup), device)
        (_, labels), flops = count_flops(extract_features, backbone, islice(batches, 1), device)
        flop_images = len(labels)
        start = time.perf_counter()
        _, labels = extract_features(backbone, islice(batches, steps), device)
        seconds = time.perf_counter() - start
    finally:
        batches.close()
    return {"flops": flops, "flop_images": flop_images, "img_s": len(labels) / seconds}


def reid_extraction(backbone: torch.nn.Module, loader, device: torch.device, steps: int, warmup: int) -> dict:
    """reid_eval's extract (image + flipped image, channels_last) over `steps` batches of
    (images, label, camera, is_distractor); per image = per gallery image, both forwards."""
    from ..stages.reid_eval import extract

    backbones = {"backbone": backbone.to(device)}
    batches = _cycle(loader)
    try:
        if warmup:
            extract(islice(batches, warmup), backbones, device, "reid warm-up")
        (_, ids, _), flops = count_flops(extract, islice(batches, 1), backbones, device, "reid counted")
        flop_images = len(ids)
        start = time.perf_counter()
        _, ids, _ = extract(islice(batches, steps), backbones, device, "reid timed")
        seconds = time.perf_counter() - start
    finally:
        batches.close()
    return {"flops": flops, "flop_images": flop_images, "img_s": len(ids) / seconds}


def detection_iterations(params, dataset, device: torch.device, steps: int, warmup: int) -> dict:
    """coco_finetune's `finetune` of its Mask R-CNN: `warmup` iterations, then `steps` iterations counted
    and the same `steps` iterations (same seed: same images and image sizes) timed."""
    coco = params.eval.coco
    seed = params.seed if coco.seed is None else coco.seed
    backbone = random_backbone(params.model.arch, params.model.stem, params.seed)[0]
    torch.manual_seed(seed)
    model = build_detector(backbone, len(dataset.cat_to_label), list(coco.train_sizes), coco.test_size,
                           coco.fpn_channels).to(device)
    schedule = resolve_schedule(coco)

    def run(iterations: int, desc: str):
        finetune(model, dataset, dataclasses.replace(schedule, iterations=iterations), list(coco.train_sizes),
                 device=device, seed=seed, num_workers=coco.num_workers, desc=desc, log_every=10 ** 9)

    if warmup:
        run(warmup, "detection warm-up")
    _, flops = count_flops(run, steps, "detection counted")
    _sync(device)
    start = time.perf_counter()
    run(steps, "detection timed")
    _sync(device)
    images = steps * schedule.batch_size
    return {"flops": flops, "flop_images": images, "img_s": images / (time.perf_counter() - start)}


# --- the whole benchmark ----------------------------------------------------------------------------
@dataclasses.dataclass
class Sources:
    """What each measured step reads: the loaders (any iterables of their batches) and the coco dataset."""

    pretrain: Iterable
    eval: Iterable
    reid: Iterable | None
    detection: object | None  # a pipeline.evaluation.coco_data.CocoDetection (training split)


def default_sources(params, device: torch.device, threads: dict, reid: bool = True,
                    detection: bool = True) -> Sources:
    """The loaders and data the stages use, from params.yaml and data/."""
    from ..evaluation.coco_data import load_split
    from ..loaders.from_params import classification_eval_loader, reid_eval_loader, ssl_loader
    from ..stages.coco_finetune import MANIFESTS

    c = params.data.coco
    return Sources(
        pretrain=ssl_loader(params, device=device, **threads),
        eval=classification_eval_loader(params, "classification_train", device=device, **threads),
        reid=reid_eval_loader(params, "sysu_gallery", device=device, **threads) if reid else None,
        detection=load_split(c.root, c.train_split, MANIFESTS if MANIFESTS.is_dir() else None, train=True,
                             follow_external_symlinks=params.validate_.follow_external_symlinks)
        if detection else None)


def run(params, sources: Sources, device: torch.device, *, steps: int = 10, warmup: int = 2, reid_steps: int = 2,
        detection_steps: int = 4, peak_size: int = 2048, eval_step: bool = True) -> dict:
    """Measure the peak, then each step kind in `sources` (None: skipped); the benchmark's dict."""
    load_start = os.getloadavg()[0]
    threads = os.cpu_count() or 1
    if device.type == "cpu":
        torch.set_num_threads(threads)
    peak = matmul_peak(peak_size, device)
    _say(f"fp32 matmul peak {peak:.1f} GFLOP/s ({peak_size} x {peak_size}, {torch.get_num_threads()} threads)")
    m, t = params.model, params.train
    result = {"bench": "machine", "device": str(device), "cpu_model": cpu_model(), "cores": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "peak_size": peak_size, "peak_gflop_s": round(peak, 1),
              "arch": m.arch, "precision": t.precision, "steps": steps, "warmup": warmup}

    def add(prefix: str, measure: Callable[[], dict], what: str) -> None:
        if device.type == "cpu":  # every step on all cores (ffcv loaders change torch's count at epoch starts)
            torch.set_num_threads(threads)
        measured = measure()
        result.update(figures(prefix, measured["flops"], measured["flop_images"], measured["img_s"], peak))
        _say(f"{prefix}: {result[f'{prefix}_gflop_per_image']} GFLOP/image x {result[f'{prefix}_img_s']} img/s "
             f"= {result[f'{prefix}_gflop_s']} GFLOP/s, {100 * result[f'{prefix}_efficiency']:.1f}% of the peak "
             f"({what})")

    add("pretrain", lambda: pretrain_step(params, sources.pretrain, device, steps, warmup),
        f"Pretrainer._step, batch {t.batch_size}, {t.image_size} px views")
    result.update({"pretrain_batch_size": t.batch_size, "pretrain_image_size": t.image_size})
    backbone = lambda: random_backbone(m.arch, m.stem, params.seed)[0]  # noqa: E731 - a fresh one per use
    if eval_step:
        add("eval", lambda: eval_extraction(backbone(), sources.eval, device, steps, warmup),
            f"extract_features, batch {params.eval.linear.batch_size}, {t.image_size} px")
        result.update({"eval_batch_size": params.eval.linear.batch_size, "eval_image_size": t.image_size})
    r = params.eval.reid
    if sources.reid is not None and reid_steps > 0:
        add("reid", lambda: reid_extraction(backbone(), sources.reid, device, reid_steps, min(warmup, 1)),
            f"reid_eval.extract, batch {r.batch_size}, {r.height} x {r.width} px + flip")
        result.update({"reid_steps": reid_steps, "reid_batch_size": r.batch_size,
                       "reid_image_size": [r.height, r.width]})
    coco = params.eval.coco
    if sources.detection is not None and detection_steps > 0:
        batch = resolve_schedule(coco).batch_size
        add("detection", lambda: detection_iterations(params, sources.detection, device, detection_steps,
                                                      min(warmup, 1)),
            f"finetune, Mask R-CNN FPN {coco.fpn_channels}, batch {batch}, sizes {list(coco.train_sizes)}")
        result.update({"detection_steps": detection_steps, "detection_batch_size": batch,
                       "detection_train_sizes": list(coco.train_sizes)})
    result.update({"load_avg_1min_start": round(load_start, 2), "load_avg_1min": round(os.getloadavg()[0], 2)})
    return result


# The embedded default before the budget was re-designed (commit 47c0659, issue 13): measured in the same
# run as params.yaml's configuration, so the two steps' costs compare side by side on one machine.
BEFORE_COMMIT = "47c0659"
BEFORE = {"train.batch_size": 128, "train.image_size": 32, "eval.reid.height": 256, "eval.reid.width": 128,
          "eval.coco.train_sizes": [96, 112, 128], "eval.coco.test_size": 128}


def with_overrides(params, overrides: dict, source: str = f"params.yaml with {BEFORE_COMMIT}'s default"):
    """params with dotted keys replaced, validated again (a bad override is named like any params error,
    `source` saying where the values came from)."""
    from ..config import validate_params

    raw = params.model_dump(by_alias=True)
    for key, value in overrides.items():
        node = raw
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return validate_params(raw, source)


def run_before(params, device: torch.device, threads: dict, args) -> dict:
    """The same figures for the pre-redesign default (BEFORE), prefixed `before_`; a step whose settings
    did not change is not measured twice."""
    old = with_overrides(params, BEFORE)
    reid = args.reid_steps > 0 and (old.eval.reid.height, old.eval.reid.width) != (params.eval.reid.height,
                                                                                   params.eval.reid.width)
    detection = args.detection_steps > 0 and old.eval.coco != params.eval.coco
    sources = default_sources(old, device, threads, reid=reid, detection=detection)
    measured = run(old, sources, device, steps=args.steps, warmup=args.warmup, reid_steps=args.reid_steps,
                   detection_steps=args.detection_steps, peak_size=args.peak_size, eval_step=False)
    keep = {k: v for k, v in measured.items() if k.split("_")[0] in ("pretrain", "reid", "detection", "peak")}
    return {"before_commit": BEFORE_COMMIT, **{f"before_{k}": v for k, v in keep.items()}}


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench machine")
    ap.add_argument("--steps", type=int, default=10, help="timed pretrain steps and eval batches")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (reid and detection: at most 1)")
    ap.add_argument("--reid-steps", type=int, default=2, help="timed reid batches (0: skip reid)")
    ap.add_argument("--detection-steps", type=int, default=4,
                    help="counted, then timed detection iterations (0: skip detection)")
    ap.add_argument("--peak-size", type=int, default=2048, help="n of the n x n fp32 matmul of the peak")
    ap.add_argument("--no-before", dest="before", action="store_false",
                    help=f"skip the pre-redesign default ({BEFORE_COMMIT}) measured after params.yaml's")
    args = ap.parse_args(argv)
    if min(args.steps, args.peak_size) < 1 or min(args.warmup, args.reid_steps, args.detection_steps) < 0:
        ap.error("--steps and --peak-size must be >= 1; --warmup, --reid-steps, --detection-steps >= 0")
    params = load_params()
    device = pick_device(params.train.device)
    threads = {"torch_threads": os.cpu_count()} if device.type == "cpu" else {}
    sources = default_sources(params, device, threads, reid=args.reid_steps > 0, detection=args.detection_steps > 0)
    result = run(params, sources, device, steps=args.steps, warmup=args.warmup, reid_steps=args.reid_steps,
                 detection_steps=args.detection_steps, peak_size=args.peak_size)
    if args.before:
        _say(f"the same steps with {BEFORE_COMMIT}'s default: {BEFORE}")
        result.update(run_before(params, device, threads, args))
        for prefix in ("pretrain", "reid", "detection"):
            if f"before_{prefix}_img_s" in result and f"{prefix}_img_s" in result:
                # Seconds per image, before over now: how much cheaper the step's work is now.
                result[f"{prefix}_speedup_vs_before"] = round(result[f"{prefix}_img_s"]
                                                              / result[f"before_{prefix}_img_s"], 3)
    return result
