"""python -m pipeline.bench <name> [options]

`<name>` is a module of this package (pipeline/bench/<name>.py) with `main(argv)`; a new benchmark needs
no registration here. main returns an exit code, or a dict that is printed as the final JSON line.
  loader   the FFCV SSL loader vs torchvision ImageFolder + DataLoader, any views (--views 2x32+6x16; img/s, ratio)
  loss     forward + backward time of the losses
  train    images/s of real pretraining steps on the embedded default (with and without the loader)
  paper_train  pretraining images/s per GPU, FFCV loader vs torchvision loader (the paper profile on a GPU)
  machine  the fp32 matmul peak and the share of it each compute-heavy step reaches (and 47c0659's default)
  step_profile  where a pretraining iteration's time goes (loader wait, augmentation, kernels by kind, optimizer, EMA)
  budget   what a pretraining budget learns: the stage's training run with overrides, kNN and linear gains per epoch
  gpu      the pretraining step on a GPU: the paper profile and the default, synthetic batches (scripts/gpu_check.sh)
  methods  images/s and GFLOP per image of one training step of every method (triplet, byol, infonce, simclr, simsiam)
  levers   CPU levers of the pretraining step (channels_last, AdamW foreach/fused, threads), side by side
  repro    a fresh clone of a commit, `dvc repro --force`, seconds per stage
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

NOT_BENCHES = {"__main__", "torchvision_ssl", "views"}  # helpers of this package, not benchmarks


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                  if not m.name.startswith("_") and m.name not in NOT_BENCHES)


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__ + f"\navailable: {', '.join(names)}", file=sys.stderr)
        return 0 if argv else 2
    if argv[0] not in names:
        print(f"error: unknown benchmark {argv[0]!r}; expected one of {names}", file=sys.stderr)
        return 2
    result = importlib.import_module(f"{__package__}.{argv[0]}").main(argv[1:])
    if isinstance(result, dict):
        print(json.dumps(result))
        return 0
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
