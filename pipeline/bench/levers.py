"""CPU levers of the pretraining step, each measured against the plain step side by side in one run.

    python -m pipeline.bench levers [--steps 12] [--warmup 3] [--rounds 3] [--variants a,b,...] [--compile]

Every variant runs the pretrain stage's own step (`Pretrainer._step`: two-view online forward + backward,
EMA target forward, optimizer and EMA update) on the same in-memory two-view batches of the real FFCV
loader (so the loader's threads cannot favour one variant), with params.yaml's model/loss/train settings
and one change each:
  plain            the step as params.yaml configures it
  channels_last    model and views in channels_last memory format (oneDNN's preferred layout for conv)
  adamw_foreach    torch.optim.AdamW(foreach=True) (multi-tensor update; torch's CPU default is a loop)
  adamw_fused      torch.optim.AdamW(fused=True) (one fused kernel per parameter group on CPU)
  threads_1        torch on one thread (what an oversubscribed machine effectively gives a run)
  compile          torch.compile of the model's forward (inductor, C++ codegen); its compile time is
                   reported apart, as the images it would have trained meanwhile (--compile: opt-in, slow)
The variants are timed in interleaved rounds (plain, a, b, ..., plain, a, b, ...) and each keeps its best
round, so a load change on a shared machine hits every variant alike. Last line: one JSON object with
img/s per variant and its speed-up over plain.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from ..config import load_params
from ..loaders.from_params import ssl_loader
from ..train.distributed import DistInfo
from ..train.loop import Pretrainer, pick_device
from .machine import cpu_model

VARIANTS = ("plain", "channels_last", "adamw_foreach", "adamw_fused", "threads_1")


def _say(message: str) -> None:
    print(f"[bench levers] {message}", flush=True)


def _trainer(params, variant: str, batches: list) -> Pretrainer:
    if variant == "channels_last":
        params = params.model_copy(update={"train": params.train.model_copy(update={"channels_last": True})})
    trainer = Pretrainer(params, Path(tempfile.gettempdir()) / "bench-levers-unused", batches,
                         DistInfo(), torch.device("cpu"))
    t = params.train
    if variant in ("adamw_foreach", "adamw_fused"):
        if t.optimizer != "adamw":
            raise SystemExit(f"--variants {variant}: train.optimizer is {t.optimizer!r}, not adamw")
        flag = {"foreach": True} if variant == "adamw_foreach" else {"fused": True}
        # The trainer's own groups (decay / no-decay split), handed to the variant's AdamW.
        trainer.optimizer = torch.optim.AdamW(trainer.optimizer.param_groups, lr=t.lr, weight_decay=t.weight_decay,
                                              **flag)
    return trainer


@contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _time(trainer: Pretrainer, batches: list, steps: int) -> float:
    """img/s of `steps` steps over the cached batches."""
    sums = {"loss": 0.0, "n": 0}
    images = 0
    start = time.perf_counter()
    for i in range(steps):
        batch = batches[i % len(batches)]
        trainer._step(batch, i, sums)
        images += len(batch[0])
    return images / (time.perf_counter() - start)


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench levers")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per variant and round")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant before the rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the model (minutes)")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or "plain" not in variants or min(args.steps, args.rounds) < 1 or args.warmup < 0:
        ap.error(f"--variants must include plain and name only {', '.join(VARIANTS)} (got {unknown or variants}); "
                 "--steps and --rounds >= 1, --warmup >= 0")
    if args.compile:
        variants.append("compile")
    params = load_params()
    device = pick_device(params.train.device)
    if device.type != "cpu":
        raise SystemExit("bench levers measures CPU levers: set train.device=cpu (the GPU path: bench paper_train)")
    cores = os.cpu_count() or 1
    loader = ssl_loader(params, device=device, torch_threads=cores)
    cached = []
    for batch in loader:  # real augmented views, held in memory: every variant trains on the same batches
        cached.append(tuple(x.clone() for x in batch))
        if len(cached) >= 8:
            break
    return measure(params, cached, variants, steps=args.steps, warmup=args.warmup, rounds=args.rounds)


def measure(params, cached: list, variants: list[str], *, steps: int, warmup: int, rounds: int) -> dict:
    """img/s of each variant on the cached (view1, view2, labels) batches, best of interleaved rounds."""
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    trainers, compile_s = {}, None
    for variant in variants:
        trainers[variant] = _trainer(params, variant, cached)
        if variant == "compile":
            start = time.perf_counter()
            trainers[variant].ddp = torch.compile(trainers[variant].ddp)
            _time(trainers[variant], cached, 2)  # the first steps compile forward and backward
            compile_s = time.perf_counter() - start
            _say(f"torch.compile: {compile_s:.0f} s to compile")
        with _threads(1 if variant == "threads_1" else cores):
            _time(trainers[variant], cached, warmup)
    best = {v: 0.0 for v in variants}
    for r in range(rounds):
        for variant in variants:
            with _threads(1 if variant == "threads_1" else cores):
                best[variant] = max(best[variant], _time(trainers[variant], cached, steps))
        _say(f"round {r + 1}/{rounds}: " + ", ".join(f"{v} {best[v]:.1f}" for v in variants) + " img/s (best so far)")
    t = params.train
    result = {"bench": "levers", "cpu_model": cpu_model(), "cores": cores, "arch": params.model.arch,
              "batch_size": t.batch_size, "image_size": t.image_size, "steps": steps, "rounds": rounds}
    for variant in variants:
        result[f"{variant}_img_s"] = round(best[variant], 1)
        result[f"{variant}_speedup"] = round(best[variant] / best["plain"], 3)
    if compile_s is not None:
        result["compile_s"] = round(compile_s, 1)
        # The images it takes the compiled step to win back its compile time.
        per_image_gain = 1 / best["plain"] - 1 / best["compile"]
        result["compile_break_even_images"] = round(compile_s / per_image_gain) if per_image_gain > 0 else None
    result["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return result
