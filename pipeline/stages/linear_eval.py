"""Stage `linear_eval`: linear evaluation of the pretrained backbone and of its random-init twin.

docs/method.md section 4: frozen backbone in eval mode, a linear head on the global-average-pooled features,
SGD momentum 0.9 without weight decay, warm-up + cosine, eval.linear.epochs / lr / batch_size; top-1 and
top-5 on the val split. With eval.linear.fast_features (the embedded default) the training features are
extracted once from un-augmented images and the head trains on them: a clearly labelled shortcut (the
metrics say `fast_features: true`); otherwise every epoch re-reads augmented training crops (the protocol).

Methods evaluated on bags of patches (EMP-SSL, docs/methods.md) get each image's mean feature over
loss.eval_patches patches and always take the fixed-features path, as their authors evaluate
(`features: patch_bag` in the metrics).

Outputs in data/linear/: metrics.json (both backbones, the gain, the protocol used), curve.csv (val top-1
per head epoch for both, a DVC plot) and curve.png.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from ..evaluation.backbone_io import load_backbone, random_backbone
from ..evaluation.knn import extract_features
from ..evaluation.linear import fit_on_features, fit_on_loader
from ..evaluation.plots import line_plot
from ..io_safety import atomic_write
from ..loaders.from_params import classification_eval_loader, linear_train_loader
from ..methods.catalog import PATCH_METHODS
from ..train.loop import pick_device
from ._common import StageFailed, log, run_stage, write_metrics

BACKBONE = Path("data/pretrain/backbone.pt")
OUT = Path("data/linear")


def fixed_features(params) -> bool:
    """Train the head on features extracted once: eval.linear.fast_features, or a patch-bag method."""
    return params.eval.linear.fast_features or params.method in PATCH_METHODS


def evaluate_backbone(name: str, backbone, dim: int, params, device, loaders: dict) -> dict:
    """loaders: the evaluation loaders, built once for both backbones (each ffcv Loader compiles its pipeline
    when built); "augmented_train" (the slow path) is a factory."""
    cfg = params.eval.linear
    backbone.to(device).eval()
    val = extract_features(backbone, loaders["val"], device)
    if len(val[0]) == 0:
        raise StageFailed("the classification val split is empty: linear evaluation needs val images")

    def report(r):
        log.info("%s epoch %d/%d: loss %.3f, val top-1 %.4f", name, r["epoch"], cfg.epochs, r["train_loss"],
                 r["val_top1"])

    if fixed_features(params):
        train = extract_features(backbone, loaders["train"], device)
        classes = int(max(train[1].max(), val[1].max())) + 1
        result = fit_on_features(train, val, classes=classes, epochs=cfg.epochs, lr=cfg.lr,
                                 batch_size=cfg.batch_size, seed=params.seed, on_epoch=report)
    else:
        loader = loaders["augmented_train"]()  # fresh per backbone: both see the same augmentation draws
        classes = int(val[1].max()) + 1
        result = fit_on_loader(backbone, loader, len(loader), val, dim=dim,
                               classes=max(classes, 2), epochs=cfg.epochs, lr=cfg.lr, device=device,
                               seed=params.seed, on_epoch=report)
    return {"top1": result.top1, "top5": result.top5, "curve": result.curve}


def main() -> None:
    def body(params):
        cfg = params.eval.linear
        device = pick_device(params.train.device)
        threads = {"torch_threads": os.cpu_count()} if device.type == "cpu" else {}
        arch, stem = params.model.arch, params.model.stem
        backbones = {"pretrained": load_backbone(BACKBONE, arch, stem),
                     "random_init": random_backbone(arch, stem, params.seed)}
        loaders = {"val": classification_eval_loader(params, "classification_val", device=device, **threads)}
        if fixed_features(params):
            loaders["train"] = classification_eval_loader(params, "classification_train", device=device, **threads)
        else:
            loaders["augmented_train"] = lambda: linear_train_loader(params, device=device, **threads)
        results = {name: evaluate_backbone(name, net, dim, params, device, loaders)
                   for name, (net, dim) in backbones.items()}
        metrics = {name: {"top1": r["top1"], "top5": r["top5"]} for name, r in results.items()}
        metrics["gain"] = {k: metrics["pretrained"][k] - metrics["random_init"][k] for k in ("top1", "top5")}
        metrics["protocol"] = {"epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size,
                               "fast_features": fixed_features(params), "image_size": params.train.image_size,
                               "features": "patch_bag" if params.method in PATCH_METHODS else "centre_crop"}
        OUT.mkdir(parents=True, exist_ok=True)
        _write_curve(results)
        line_plot(OUT / "curve.png", {name: ([c["epoch"] for c in r["curve"]], [c["val_top1"] for c in r["curve"]])
                                      for name, r in results.items()},
                  xlabel="head epoch", ylabel="val top-1",
                  title=f"linear evaluation, {arch}{' (fast path: fixed features)' if fixed_features(params) else ''}")
        write_metrics(OUT / "metrics.json", metrics)
        log.info("linear top-1 %.4f (random init %.4f, gain %+.4f) -> %s", metrics["pretrained"]["top1"],
                 metrics["random_init"]["top1"], metrics["gain"]["top1"], OUT / "metrics.json")

    run_stage("linear_eval", body)


def _write_curve(results: dict) -> None:
    with atomic_write(OUT / "curve.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *(f"{name}_val_top1" for name in results)])
        for rows in zip(*(r["curve"] for r in results.values())):
            w.writerow([rows[0]["epoch"], *(f"{row['val_top1']:.4f}" for row in rows)])


if __name__ == "__main__":
    torch.set_num_threads(os.cpu_count() or 1)
    main()
