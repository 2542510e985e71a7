"""What one training step of each method costs on the embedded default: images/s and GFLOP per image.

    python -m pipeline.bench methods [--methods triplet,simclr] [--steps 8] [--warmup 2] [--rounds 2]

Every method is params.yaml with its method switched as `-S method=<name>` switches it (its loss section
composed from conf/, everything else as in params.yaml), and trains through the pretrain stage's own step
(`Pretrainer._step`: forward, backward, optimiser and, where the method has one, the EMA target update) on
the same real augmented batches held in memory, in interleaved rounds (best round each): the pair of views
for most methods, loss.patches patches per image for EMP-SSL (the same images, cut as its loader cuts them).
FLOPs are counted with `FlopCounterMode` over one step (matmuls and convolutions, forward and backward).
JSON: per method `img_s` (images, whatever the views per image), `gflop_per_image`, `views_per_image` and
`img_s_vs_triplet`.
"""
from __future__ import annotations

import argparse
import os

import torch

from ..config import compose, load_params, validate_params
from ..loaders.from_params import ssl_loader
from ..methods import METHOD_LOSSES, PATCH_METHODS
from ..train.loop import pick_device
from .levers import _threads, _time, _trainer
from .machine import count_flops, cpu_model


def _say(message: str) -> None:
    print(f"[bench methods] {message}", flush=True)


def with_method(params, method: str):
    """params with `method` and its loss section as `-S method=<method>` would compose them."""
    raw = params.model_dump(by_alias=True)
    raw["method"], raw["loss"] = method, compose([f"method={method}"])["loss"]
    return validate_params(raw, f"params.yaml with -S method={method}")


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench methods")
    ap.add_argument("--methods", default=",".join(METHOD_LOSSES), help="comma list (default: every method)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per method and round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHOD_LOSSES))
    if unknown or not methods or min(args.steps, args.rounds) < 1 or args.warmup < 0:
        ap.error(f"--methods must name some of {', '.join(METHOD_LOSSES)} (got {unknown or methods}); "
                 "--steps and --rounds >= 1, --warmup >= 0")
    params = load_params()
    device = pick_device(params.train.device)
    if device.type != "cpu":
        raise SystemExit("bench methods runs on the CPU: set train.device=cpu")
    cores = os.cpu_count() or 1
    layouts = {}  # the same real images for every method; one loader per way of cutting views
    for method in methods:
        patches = method in PATCH_METHODS
        if patches not in layouts:
            layouts[patches] = _batches(with_method(params, method) if patches else params, device, cores)
    cached = {method: layouts[method in PATCH_METHODS] for method in methods}
    return measure(params, cached, methods, steps=args.steps, warmup=args.warmup, rounds=args.rounds)


def _batches(params, device, cores: int, count: int = 4) -> list[tuple]:
    cached = []
    for batch in ssl_loader(params, device=device, torch_threads=cores):
        view1, view2, label, *local = batch
        more = (tuple(v.clone() for v in local[0]),) if local else ()  # multi-crop's or EMP-SSL's further views
        cached.append((view1.clone(), view2.clone(), label.clone(), *more))
        if len(cached) >= count:
            return cached
    return cached


def measure(params, cached: dict[str, list], methods: list[str], *, steps: int, warmup: int, rounds: int) -> dict:
    """cached: per method, the batches it trains on (view 1, view 2, labels[, more views])."""
    cores = os.cpu_count() or 1
    trainers, gflop = {}, {}
    with _threads(cores):
        for method in methods:
            batches = cached[method]
            trainer = _trainer(with_method(params, method), "plain", batches)
            _time(trainer, batches, warmup)
            _, flops = count_flops(trainer._step, batches[0], 0, {"loss": 0.0, "n": 0})
            trainers[method], gflop[method] = trainer, flops / len(batches[0][0]) / 1e9
        best = {m: 0.0 for m in methods}
        for r in range(rounds):
            for method in methods:
                best[method] = max(best[method], _time(trainers[method], cached[method], steps))
            _say(f"round {r + 1}/{rounds}: " + ", ".join(f"{m} {best[m]:.1f}" for m in methods) + " img/s")
    t = params.train
    reference = best.get("triplet")
    result = {"bench": "methods", "cpu_model": cpu_model(), "cores": cores, "arch": params.model.arch,
              "batch_size": t.batch_size, "image_size": t.image_size, "steps": steps, "rounds": rounds}
    for method in methods:
        batch = cached[method][0]
        result[method] = {"img_s": round(best[method], 1), "gflop_per_image": round(gflop[method], 4),
                          "views_per_image": 2 + (len(batch[3]) if len(batch) > 3 else 0),
                          "img_s_vs_triplet": round(best[method] / reference, 3) if reference else None}
    return result
