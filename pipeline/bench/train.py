"""Training throughput on the embedded default: images/s of real pretraining steps.

    python -m pipeline.bench train [--steps 30] [--warmup 5]

Runs the pretrain stage's own step (two-view FFCV loader, augmentations, online + EMA target forward,
backward, optimizer and EMA update) for a few steps with params.yaml's model/loss/train settings, and the
same step on synthetic in-memory views (no loader), side by side, so the loader's share of a step shows.
Needs `dvc repro convert` to have written data/beton/. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from ..config import load_params
from ..loaders.from_params import ssl_loader
from ..train.distributed import DistInfo
from ..train.loop import Pretrainer, pick_device


def _time_steps(trainer: Pretrainer, batches, steps: int, warmup: int) -> float:
    sums = {"loss": 0.0, "n": 0}
    it = iter(batches)
    for i in range(warmup):
        trainer._step(next(it), i, sums)
    t0 = time.perf_counter()
    for i in range(steps):
        trainer._step(next(it), i, sums)
    return steps / (time.perf_counter() - t0)


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench train")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args(argv)
    params = load_params()
    device = pick_device(params.train.device)
    threads = {"torch_threads": os.cpu_count()} if device.type == "cpu" else {}
    loader = ssl_loader(params, device=device, **threads)
    need = args.steps + args.warmup
    if len(loader) < need:
        raise SystemExit(f"data/beton/classification_train.beton gives {len(loader)} batches, fewer than the "
                         f"{need} steps asked for: lower --steps")
    # A scratch folder for the checkpoint path the trainer knows about (the benchmark never saves).
    trainer = Pretrainer(params, Path(tempfile.mkdtemp(prefix="bench-train-")), loader,
                         DistInfo(), device)
    batch = params.train.batch_size
    real = _time_steps(trainer, loader, args.steps, args.warmup)
    first = next(iter(loader))
    synthetic = _time_steps(trainer, (first for _ in range(need)), args.steps, args.warmup)
    result = {"bench": "train", "device": str(device), "arch": params.model.arch, "loss": params.loss.name,
              "batch_size": batch, "image_size": params.train.image_size, "precision": params.train.precision,
              "threads": torch.get_num_threads(), "steps": args.steps,
              "train_img_s": round(real * batch, 1), "model_only_img_s": round(synthetic * batch, 1),
              "loader_share": round(1 - real / synthetic, 3) if synthetic > 0 else None,
              "load_avg_1min": round(os.getloadavg()[0], 2)}
    print(f"[bench train] {result['train_img_s']} img/s with the loader, {result['model_only_img_s']} img/s on "
          f"in-memory views ({params.model.arch}, batch {batch}, {params.train.image_size} px)")
    return result
