"""What a pretraining budget learns: the pretrain stage's own training run with overrides, gains per epoch.

    python -m pipeline.bench budget train.epochs=5 train.warmup_epochs=0.5 loss.k=16 loss.k_end=24 \
        [method=simclr] [--threads N] [--out DIR]

Runs `Pretrainer.fit` (the pretrain stage's loop: the FFCV two-view loader, the configured loss, the kNN
and linear-probe monitor after each `train.monitor_every` epochs) on data/beton/ with params.yaml plus the
dotted overrides, in a scratch folder (`--out`, default a temporary one: nothing of the pipeline's outputs
is touched). JSON: the overrides, seconds, images/s of the last epoch, the random-init figures, and per
epoch the kNN and linear gains in points over random init. docs/speed.md's budget tables were made with
it, two runs side by side with `--threads 1` each (only their gains compare then, not their speeds).
Needs data/beton/ (`dvc repro convert`).
"""
from __future__ import annotations

import argparse
import ast
import os
import tempfile
import time
from pathlib import Path

import torch

from ..config import load_params
from ..evaluation.monitor import classification_monitor
from ..loaders.from_params import ssl_loader
from ..train.distributed import DistInfo
from ..train.loop import Pretrainer, pick_device
from .machine import cpu_model, with_overrides
from .methods import with_method


def parse_overrides(items: list[str]) -> dict:
    """["train.epochs=5", "convert.loader.crop_scale=[0.5,1.0]"] -> {key: Python value (strings kept)}."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value, e.g. train.epochs=5")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def gains(history: list[dict], random_init: dict, key: str) -> list[float | None]:
    """Points over random init per epoch (None where the monitor did not run)."""
    return [round(100 * (h[key] - random_init[key]), 1) if key in h else None for h in history]


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench budget")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted params.yaml keys")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    ap.add_argument("--out", type=Path, help="scratch folder for the run's checkpoint (default: temporary)")
    args = ap.parse_args(argv)
    try:
        overrides = parse_overrides(args.overrides)
    except ValueError as e:
        ap.error(str(e))
    params = load_params()
    if "method" in overrides:  # a group switch, as -S method=<name>: the method's loss section comes with it
        params = with_method(params, overrides["method"])
    params = with_overrides(params, {k: v for k, v in overrides.items() if k != "method"},
                            "params.yaml with the budget's overrides")
    device = pick_device(params.train.device)
    threads = {"torch_threads": args.threads} if device.type == "cpu" else {}
    if threads:
        torch.set_num_threads(args.threads)
    # The pretrain stage's loader and monitor (pipeline/stages/pretrain.py), as it builds them.
    train_loader, monitor = ssl_loader(params, device=device, **threads), classification_monitor(params, device, **threads)
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        trainer = Pretrainer(params, out, train_loader, DistInfo(), device, monitor=monitor)
        start = time.perf_counter()
        state = trainer.fit()
        seconds = time.perf_counter() - start
    base = state.random_init
    return {"cpu_model": cpu_model(), "threads": args.threads, "overrides": overrides, "epochs": state.epoch,
            "steps": state.step, "seconds": round(seconds, 1),
            "images_per_s_last_epoch": round(state.history[-1]["images_per_s"], 1),
            "random_init": base, "knn_gain_points": gains(state.history, base, "knn_top1"),
            "linear_gain_points": gains(state.history, base, "linear_top1")}
