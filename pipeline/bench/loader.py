"""Benchmark: the FFCV SSL loader against torchvision (ImageFolder + DataLoader, transforms.v2), same views.

    python -m pipeline.bench loader [--views 2x32+6x16] [--rounds 3] [--batch-size N] [--workers N]
                                    [--device cpu|cuda] [--images-224 512] [--no-224]

Both loaders produce the same thing: the augmented, normalised float views of every image, batched on
`device`: BYOL's pair by default, or what `--views` names (multi-crop `2x32+6x16`, EMP-SSL's patches
`patches:20x32@0.25`; bench/views.py). Throughput counts images (each giving all its views) per second over
whole epochs, after a warm-up epoch (numba compilation, worker start-up). They run in the same process, alternating epoch by epoch,
and the median of `--rounds` epochs is reported, so a background load on the machine hits both alike.

1. The embedded resolution: the train split of data.classification (64 px JPEGs) -> train.image_size crops
   (or the `--views` layout). Uses data/beton/classification_train.beton when it is current, otherwise
   converts into a temp folder.
2. 224 px: a temporary set of 256 px JPEGs (--images-224, generated like the embedded dataset) -> the pair
   at 224 (skipped with --views, whose sizes are the embedded comparison's).

Batch size and workers default to train.batch_size and train.num_workers (ffcv: decoder threads;
torchvision: worker processes). The last line of output is one JSON object; `ratio` = ffcv / torchvision.
`ffcv_decode_img_s` is the loader alone (decode + two crops + flips, no colour ops): the gap to
`ffcv_img_s` is the batched torch augmentation, the part a GPU takes over.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from .views import ViewLayout, parse_views

log = logging.getLogger("pipeline.bench")
TARGET_RATIO = 5.0


def _rate(batches, device: torch.device) -> float:
    """Images per second over one pass of `batches` (each yields the batch's first tensor first)."""
    t0, n = time.perf_counter(), 0
    for batch in batches:
        first = batch[0]
        n += first.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def _tv_batches(loader, device: torch.device):
    """torchvision batches moved to the device like the ffcv ones: ([v1, v2, ...], label) -> (v1, v2, ..., label)."""
    for views, label in loader:
        yield (*(v.to(device, non_blocking=True) for v in views), label.to(device))


def compare(beton: Path, folder: Path, *, size: int, batch_size: int, workers: int, rounds: int, seed: int,
            device: torch.device, crop_scale=(0.08, 1.0), label: str = "", layout: ViewLayout | None = None) -> dict:
    from ..loaders.ssl import SSLLoader
    from .torchvision_ssl import torchvision_loader

    layout = layout or ViewLayout(size, tuple(crop_scale))
    ffcv = SSLLoader(beton, batch_size=batch_size, seed=seed, device=device, num_workers=workers,
                     **layout.loader_kwargs())
    tv = torchvision_loader(folder, size=size, batch_size=batch_size, num_workers=workers, seed=seed,
                            layout=layout, pin_memory=device.type == "cuda")
    if len(ffcv) == 0 or len(tv) == 0:
        raise ValueError(f"{beton} / {folder}: fewer images than one batch of {batch_size}")
    t0 = time.perf_counter()
    _rate(ffcv, device), _rate(_tv_batches(tv, device), device)  # warm-up: numba compile, worker start
    log.info("%s warm-up %.1f s", label, time.perf_counter() - t0)
    rates = {"ffcv": [], "torchvision": [], "ffcv_decode": []}
    for r in range(rounds):
        rates["ffcv"].append(_rate(ffcv, device))
        rates["torchvision"].append(_rate(_tv_batches(tv, device), device))
        rates["ffcv_decode"].append(_rate(ffcv.loader, device))
        log.info("%s round %d: ffcv %.0f img/s, torchvision %.0f img/s, ffcv decode only %.0f img/s", label, r + 1,
                 rates["ffcv"][-1], rates["torchvision"][-1], rates["ffcv_decode"][-1])
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"ffcv_img_s": round(med["ffcv"], 1), "torchvision_img_s": round(med["torchvision"], 1),
            "ratio": round(med["ffcv"] / med["torchvision"], 2), "ffcv_decode_img_s": round(med["ffcv_decode"], 1),
            "images": len(ffcv) * batch_size, "views": layout.describe(), "views_per_image": layout.views_per_image}


def _embedded_beton(params, tmp: Path) -> Path:
    """data/beton/classification_train.beton if current, else a fresh conversion into tmp."""
    from ..ffcv_io.datasets import MANIFESTS, convert_all
    from ..ffcv_io.sidecar import BetonError, check_beton
    from ..loaders.from_params import expectations

    e = expectations(params, "classification_train")
    try:
        check_beton(e["beton"], e["manifest"], e["settings"])
        return e["beton"]
    except BetonError as err:
        if not e["manifest"].is_file():
            raise SystemExit(f"error: {e['manifest']} not found: run `dvc repro validate` first") from None
        log.info("%s; converting into a temporary folder instead", err)
    stats = convert_all(params, tmp, MANIFESTS, names=["classification_train"])
    return stats[0].path


def _large_set(tmp: Path, images: int, seed: int, settings) -> tuple[Path, Path]:
    """A temporary ImageFolder of 256 px JPEGs (4 classes, drawn like the embedded set) and its .beton."""
    from ..data.generate_classification import generate_classification
    from ..ffcv_io.sidecar import write_sidecar
    from ..ffcv_io.writer import write_beton

    cfg = {"classes": 4, "image_size": 256, "train_per_class": max(1, images // 4), "val_per_class": 1,
           "palette_size": 8, "scale": [0.5, 0.85], "max_distractors": 2, "jpeg_quality": 90}
    root = tmp / "imagenet256"
    generate_classification(root, cfg, seed)
    files = sorted((root / "train").glob("*/*.jpg"))
    rels = [f.relative_to(root).as_posix() for f in files]
    classes = sorted({f.parent.name for f in files})
    beton = write_beton(tmp / "train256.beton", [(str(f), rel) for f, rel in zip(files, rels)],
                        {"label": [classes.index(f.parent.name) for f in files]}, settings, num_workers=2).path
    # The loaders require a sidecar; this set's "manifest" is just its file list.
    listing = tmp / "train256.txt"
    listing.write_text("\n".join(rels) + "\n")
    write_sidecar(beton, manifest=listing, selection={"split": "train"}, root=str(root),
                  settings=settings.as_dict(), fields=["image", "label"], num_samples=len(files))
    return root / "train", beton


def main(argv: list[str]) -> int:
    from ..config import ParamsError, load_params
    from ..ffcv_io.encode import EncodeSettings

    ap = argparse.ArgumentParser(prog="python -m pipeline.bench loader", description=__doc__.split("\n")[0])
    ap.add_argument("--views", help="the views per image, e.g. 2x32+6x16 or patches:20x32@0.25 (bench/views.py); "
                                    "default: the pair at train.image_size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images-224", type=int, default=512)
    ap.add_argument("--no-224", action="store_true", help="skip the 224 px comparison")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench loader] %(message)s", stream=sys.stderr)
    try:
        params = load_params()
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    loader_cfg = params.convert.loader
    try:
        layout = parse_views(args.views, loader_cfg.crop_scale, loader_cfg.local_crop_scale) if args.views else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    batch = args.batch_size or params.train.batch_size
    workers = params.train.num_workers if args.workers is None else args.workers
    c = params.data.classification
    result = {"bench": "loader", "device": str(device), "cpu_count": os.cpu_count(), "batch_size": batch,
              "num_workers": workers, "image_size": params.train.image_size}
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        tmp = Path(tmp)
        beton = _embedded_beton(params, tmp)
        folder = Path(c.root) / c.train_split
        result.update(compare(beton, folder, size=params.train.image_size, batch_size=batch, workers=workers,
                              rounds=args.rounds, seed=params.seed, device=device,
                              crop_scale=tuple(loader_cfg.crop_scale), label="embedded", layout=layout))
        if not args.no_224 and layout is None:
            settings = EncodeSettings.from_params(params.convert)
            folder224, beton224 = _large_set(tmp, args.images_224, params.seed, settings)
            r224 = compare(beton224, folder224, size=224, batch_size=min(batch, args.images_224 // 2),
                           workers=workers, rounds=args.rounds, seed=params.seed, device=device, label="224 px")
            result.update({f"{k}_224": v for k, v in r224.items()})
    result["load_avg_1min"] = round(os.getloadavg()[0], 2)  # other processes on the machine skew both sides
    result["meets_target"] = result["ratio"] >= TARGET_RATIO
    print(json.dumps(result))
    return 0
