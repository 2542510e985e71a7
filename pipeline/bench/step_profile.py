"""Where a pretraining iteration's time goes: loader wait, augmentation, kernels by kind, optimizer, EMA.

    python -m pipeline.bench step_profile [--steps 20] [--warmup 3] [--profiled-steps 5]

Runs the pretrain stage's loop body as `Pretrainer.fit` does (next batch from the real two-view FFCV loader,
then `Pretrainer._step`) with params.yaml's settings and the stage's thread layout, and splits the wall time:
  loader_wait   waiting in `next()` for the decoded crops (ffcv decodes in background threads, overlapped
                with the step; what is left is the part the step does not hide)
  augment       the BYOL colour / grayscale / blur / solarize pass on the two views (main thread)
  step          `Pretrainer._step`, of which
    optimizer   the optimizer step (through the grad scaler)
    ema         the target network's EMA update
    forward_backward  the rest: both views' online forward and backward, target forward, loss
Then, over `--profiled-steps` more steps on one stored batch, torch.profiler's self CPU time of the step's
operators by kind: convolution (forward and backward), GEMM (mm / addmm / bmm), BatchNorm, the fused
multi-tensor (`_foreach`) updates of the optimizer and EMA, and everything else (activations, pooling,
normalisation, the loss's top-k, copies), as shares of the profiled time.
Needs data/beton/ (`dvc repro convert`). Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from ..config import load_params
from ..loaders.from_params import ssl_loader
from ..train.distributed import DistInfo
from ..train.loop import Pretrainer, pick_device
from .machine import _cycle, cpu_model

KINDS = (("convolution", ("convolution",)), ("gemm", ("aten::mm", "aten::addmm", "aten::bmm")),
         ("batch_norm", ("batch_norm",)), ("foreach", ("_foreach",)))


def kind_of(op_name: str) -> str:
    """The kind of a profiler operator name: the first of KINDS whose patterns it contains, else 'other'."""
    for kind, patterns in KINDS:
        if any(p in op_name for p in patterns):
            return kind
    return "other"


def shares_by_kind(self_us: dict[str, float]) -> dict[str, float]:
    """{op name: self time} -> {kind: share of the total}, every kind present (0.0 if none)."""
    totals = defaultdict(float)
    for name, us in self_us.items():
        totals[kind_of(name)] += us
    whole = sum(totals.values()) or 1.0
    return {kind: round(totals[kind] / whole, 4) for kind, _ in (*KINDS, ("other", ()))}


class _Timed:
    """Wraps a callable, adding its wall time to `seconds[key]`."""

    def __init__(self, fn, seconds: dict, key: str):
        self.fn, self.seconds, self.key = fn, seconds, key

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds[self.key] += time.perf_counter() - start


def profile(params, loader, device: torch.device, steps: int, warmup: int, profiled_steps: int) -> dict:
    trainer = Pretrainer(params, Path(tempfile.gettempdir()) / "bench-step-profile-unused",
                         loader, DistInfo(), device)
    seconds = defaultdict(float)
    loader.augment = _Timed(loader.augment, seconds, "augment")
    trainer.scaler.step = _Timed(trainer.scaler.step, seconds, "optimizer")
    trainer.model.update_target = _Timed(trainer.model.update_target, seconds, "ema")
    sums = {"loss": 0.0, "n": 0}
    batches = _cycle(loader)  # epoch after epoch, as fit runs them
    images = 0
    for i in range(warmup + steps):
        if i == warmup:
            seconds.clear()
            images, wall_start = 0, time.perf_counter()
        start = time.perf_counter()
        batch = next(batches)
        seconds["next"] += time.perf_counter() - start
        start = time.perf_counter()
        trainer._step(batch, i, sums)
        seconds["step"] += time.perf_counter() - start
        images += len(batch[0])
    wall = time.perf_counter() - wall_start
    seconds = dict(seconds)  # what was timed; the loader's remaining batches are not
    batches.close()  # stops the loader's threads
    parts = {"loader_wait": seconds["next"] - seconds["augment"], "augment": seconds["augment"],
             "optimizer": seconds["optimizer"], "ema": seconds["ema"],
             "forward_backward": seconds["step"] - seconds["optimizer"] - seconds["ema"]}
    result = {"steps": steps, "img_s": round(images / wall, 1), "wall_s": round(wall, 2)}
    for key, value in parts.items():
        result[f"{key}_s"] = round(value, 3)
        result[f"{key}_share"] = round(value / wall, 4)
    if profiled_steps > 0:
        stored = tuple(t.clone() for t in batch)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for i in range(profiled_steps):
                trainer._step(stored, i, sums)
        self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
        result.update({f"kernel_share_{k}": v for k, v in shares_by_kind(self_us).items()})
        top = sorted(self_us.items(), key=lambda kv: -kv[1])[:8]
        result["top_ops"] = [[name, round(us / 1e3 / profiled_steps, 2)] for name, us in top]  # ms per step
    return result


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench step_profile")
    ap.add_argument("--steps", type=int, default=20, help="timed iterations (loader + step)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profiled-steps", type=int, default=5, help="steps under torch.profiler (0: none)")
    args = ap.parse_args(argv)
    if args.steps < 1 or min(args.warmup, args.profiled_steps) < 0:
        ap.error("--steps must be >= 1; --warmup and --profiled-steps >= 0")
    params = load_params()
    device = pick_device(params.train.device)
    threads = {"torch_threads": os.cpu_count()} if device.type == "cpu" else {}  # as the pretrain stage
    loader = ssl_loader(params, device=device, **threads)
    result = {"cpu_model": cpu_model(), "cores": os.cpu_count(), "batch_size": params.train.batch_size,
              "image_size": params.train.image_size, "load_avg_1min_start": round(os.getloadavg()[0], 2)}
    result.update(profile(params, loader, device, args.steps, args.warmup, args.profiled_steps))
    result["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return result
