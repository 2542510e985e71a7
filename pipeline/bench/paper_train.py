"""Pretraining images/s per GPU: the FFCV loader against a torchvision loader, same model, same run.

    python -m pipeline.config compose data=imagenet model=resnet50 train=paper && dvc repro convert
    python -m pipeline.bench paper_train [--steps 50] [--warmup 10] [--rounds 2] [--batch-size N]
                                         [--image-size N] [--workers N] [--device cuda|cpu]

Real pretraining steps (the pretrain stage's own `Pretrainer._step`: two views, online and EMA target
forward, loss, backward, LARS, EMA update; precision and channels_last from params.yaml) fed alternately,
round by round, by the FFCV two-view loader (data/beton/classification_train.beton, colour augmentations
batched on the device) and by torchvision (ImageFolder over the same train split, transforms.v2 per sample
in DataLoader worker processes, PIL decoding, views copied to the device). One process drives one GPU,
so images/s is per GPU. Sizes default to params.yaml's (the paper profile: ResNet-50, 224 px, 256 per GPU).
The last line is one JSON object; `ratio` = ffcv / torchvision. Written for a GPU machine; it also runs
on CPU at small sizes (a smoke check, not the measurement).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ..config import load_params
from ..loaders.from_params import ssl_loader
from ..train.distributed import DistInfo
from ..train.loop import Pretrainer, pick_device


def _steps_per_s(trainer: Pretrainer, batches, steps: int, warmup: int, device: torch.device) -> float:
    sums = {"loss": 0.0, "n": 0}
    it = iter(batches)
    for i in range(warmup):
        trainer._step(next(it), i, sums)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        trainer._step(next(it), i, sums)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def _forever(make):
    """Endless batches from a loader factory (a new epoch whenever one ends)."""
    epoch = 0
    while True:
        yield from make(epoch)
        epoch += 1


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench paper_train")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="alternating ffcv / torchvision rounds (median)")
    ap.add_argument("--batch-size", type=int, help="per GPU (default train.batch_size)")
    ap.add_argument("--image-size", type=int, help="default train.image_size")
    ap.add_argument("--workers", type=int, help="ffcv decoding threads / torchvision worker processes "
                                                "(default train.num_workers)")
    ap.add_argument("--device", help="default train.device")
    args = ap.parse_args(argv)
    params = load_params()
    t = params.train.model_copy(update={k: v for k, v in {
        "batch_size": args.batch_size, "image_size": args.image_size, "num_workers": args.workers,
        "device": args.device, "accumulate": 1}.items() if v is not None})
    params = params.model_copy(update={"train": t})
    device = pick_device(t.device)
    threads = {"torch_threads": os.cpu_count()} if device.type == "cpu" else {}
    ffcv = ssl_loader(params, device=device, **threads)

    from .torchvision_ssl import torchvision_loader

    folder = Path(params.data.classification.root) / params.data.classification.train_split
    tv = torchvision_loader(folder, size=t.image_size, batch_size=t.batch_size, num_workers=t.num_workers,
                            seed=params.seed, scale=tuple(params.convert.loader.crop_scale),
                            pin_memory=device.type == "cuda")

    def ffcv_epoch(epoch):
        ffcv.set_epoch(epoch)
        yield from ffcv

    def tv_epoch(_epoch):
        for (v1, v2), label in tv:  # the default layout: two views
            yield v1.to(device, non_blocking=True), v2.to(device, non_blocking=True), label.to(device)

    trainer = Pretrainer(params, Path(tempfile.mkdtemp(prefix="bench-paper-")), ffcv,
                         DistInfo(), device)
    sources = {"ffcv": _forever(ffcv_epoch), "torchvision": _forever(tv_epoch)}
    rates: dict[str, list[float]] = {name: [] for name in sources}
    for r in range(args.rounds):
        for name, batches in sources.items():
            # Warm-up steps every round: numba compilation / worker start-up, cudnn autotuning.
            rates[name].append(_steps_per_s(trainer, batches, args.steps, args.warmup if r == 0 else 2, device)
                               * t.batch_size)
    img_s = {name: statistics.median(v) for name, v in rates.items()}
    result = {"bench": "paper_train", "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "arch": params.model.arch, "loss": params.loss.name, "batch_size_per_gpu": t.batch_size,
              "image_size": t.image_size, "precision": t.precision, "channels_last": t.channels_last,
              "workers": t.num_workers, "steps": args.steps, "rounds": args.rounds,
              "ffcv_img_s_per_gpu": round(img_s["ffcv"], 1), "torchvision_img_s_per_gpu": round(img_s["torchvision"], 1),
              "ratio": round(img_s["ffcv"] / img_s["torchvision"], 2) if img_s["torchvision"] else None,
              "all_rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
              "load_avg_1min": round(os.getloadavg()[0], 2)}
    print(f"[bench paper_train] {result['ffcv_img_s_per_gpu']} img/s per GPU with FFCV vs "
          f"{result['torchvision_img_s_per_gpu']} with torchvision ({params.model.arch}, {t.image_size} px, "
          f"batch {t.batch_size}, {t.precision}, {device})")
    return result
