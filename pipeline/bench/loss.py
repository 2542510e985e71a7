"""Benchmark: forward + backward time of the losses at several batch sizes.

    python -m pipeline.bench loss [--sizes 256 1024 4096] [--dim 256] [--device cpu|cuda] ...
    python -m pipeline.bench.loss ...           (same, standalone)

Times, on CUDA when present (else CPU), one forward + backward (gradient w.r.t. the online input only;
the target is detached, as with an EMA target) of:
  triplet_smoothed (k=2..10, the official loss), triplet_median, triplet_hardest, byol, infonce (t=0.2)
for each batch size, float32, D = 256. Each measurement is the median over repeats after warm-up.
Prints a table, then returns (and standalone prints as the last line) a JSON-able dict with the timings
in ms and ``triplet_vs_infonce_4096`` = time(triplet_smoothed) / time(infonce) at B = 4096.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from pipeline.losses import BYOLLoss, InfoNCELoss, TruncatedTripletLoss

RATIO_BUDGET = 1.5


def _losses() -> dict[str, torch.nn.Module]:
    return {
        "triplet_smoothed": TruncatedTripletLoss(k=2, k_end=10, variant="smoothed"),
        "triplet_median": TruncatedTripletLoss(variant="median"),
        "triplet_hardest": TruncatedTripletLoss(variant="hardest"),
        "byol": BYOLLoss(),
        "infonce": InfoNCELoss(temperature=0.2),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(loss_fn, online: torch.Tensor, target: torch.Tensor, device: torch.device) -> float:
    online.grad = None
    _sync(device)
    start = time.perf_counter()
    loss = loss_fn(online, target)
    loss.backward()
    _sync(device)
    return (time.perf_counter() - start) * 1e3


def _measure_interleaved(losses: dict, online, target, device, warmup: int, repeats: int,
                         budget_s: float) -> dict[str, float]:
    """Median ms per loss; the losses take turns (rotating order) so that a machine shared with other
    work slows them alike, and the ratios stay meaningful."""
    names = list(losses)
    for name in names:
        for _ in range(warmup):
            _time_once(losses[name], online, target, device)
    times: dict[str, list[float]] = {name: [] for name in names}
    deadline = time.perf_counter() + budget_s
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(_time_once(losses[name], online, target, device))
        if r + 1 >= 3 and time.perf_counter() > deadline:  # keep CPU runs short; 3 rounds is the floor
            break
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench loss", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096], help="batch sizes B")
    parser.add_argument("--dim", type=int, default=256, help="feature dimension D")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up runs (default: 2 CPU, 10 CUDA)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default: 7 CPU, 50 CUDA)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="soft time budget per batch size for the timed rounds, s (default: 8 CPU, 10 CUDA)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str]) -> dict:
    args = _parse(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_cuda = device.type == "cuda"
    warmup = args.warmup if args.warmup is not None else (10 if on_cuda else 2)
    repeats = args.repeats if args.repeats is not None else (50 if on_cuda else 7)
    budget_s = args.budget_s if args.budget_s is not None else (10.0 if on_cuda else 8.0)
    if min(args.sizes) < 11:
        raise ValueError(f"--sizes must all be >= 11 (the smoothed loss ranks 10 negatives), got {args.sizes}")

    losses = _losses()
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    timings: dict[str, dict[str, float]] = {}
    for batch in args.sizes:
        online = torch.randn(batch, args.dim, generator=generator).to(device).requires_grad_(True)
        target = torch.randn(batch, args.dim, generator=generator).to(device)
        timings[str(batch)] = _measure_interleaved(losses, online, target, device, warmup, repeats, budget_s)

    if on_cuda:
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = f"cpu ({torch.get_num_threads()} threads)"
    names = list(losses)
    print(f"loss forward+backward, median ms, D={args.dim}, float32, {device_name}")
    print(f"{'B':>6} " + " ".join(f"{n:>17}" for n in names) + f" {'triplet/infonce':>16}")
    for batch, row in timings.items():
        ratio = row["triplet_smoothed"] / row["infonce"]
        print(f"{batch:>6} " + " ".join(f"{row[n]:>17.3f}" for n in names) + f" {ratio:>16.2f}")

    ratio_4096 = None
    if "4096" in timings:
        ratio_4096 = round(timings["4096"]["triplet_smoothed"] / timings["4096"]["infonce"], 3)
    return {
        "bench": "loss",
        "device": device_name,
        "dim": args.dim,
        "dtype": "float32",
        "warmup": warmup,
        "repeats": repeats,
        "cpu_load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "timings_ms": timings,
        "triplet_vs_infonce_4096": ratio_4096,
        "triplet_vs_infonce_budget": RATIO_BUDGET,
        "within_budget": None if ratio_4096 is None else ratio_4096 <= RATIO_BUDGET,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
