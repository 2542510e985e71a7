"""Stage `linear_eval`: linear evaluation of the pretrained backbone, its random-init twin and the supervised
reference (stage `supervised`), one head per seed in eval.seeds (docs/evaluation.md).

docs/method.md section 4: frozen backbone in eval mode, a linear head on the global-average-pooled features,
SGD momentum 0.9 without weight decay, warm-up + cosine, eval.linear.epochs / lr / batch_size; top-1 and
top-5 on the val split. With eval.linear.fast_features (the embedded default) the training features are
extracted once from un-augmented images and the head trains on them: a clearly labelled shortcut (the
metrics say `fast_features: true`); otherwise every epoch re-reads augmented training crops (the protocol).

Methods evaluated on bags of patches (EMP-SSL, docs/methods.md) get each image's mean feature over
loss.eval_patches patches and always take the fixed-features path, as their authors evaluate
(`features: patch_bag` in the metrics).

Outputs in data/linear/: metrics.json (the three backbones' mean, sd and per-seed top-1 / top-5, the gain, a
verdict per backbone pair, the share of the supervised gain recovered, the protocol), curve.csv (val top-1
per head epoch, first seed, a DVC plot) and curve.png.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from ..evaluation.backbone_io import load_backbone, random_backbone
from ..evaluation.compare import backbone_block, compare
from ..evaluation.embedding import embedding_picture
from ..evaluation.knn import extract_features
from ..evaluation.linear import fit_on_features, fit_on_loader
from ..evaluation.plots import line_plot
from ..io_safety import atomic_write
from ..loaders.from_params import classification_eval_loader, linear_train_loader
from ..methods.catalog import PATCH_METHODS
from ..train.loop import pick_device
from ._common import StageFailed, eval_seeds, log, run_stage, write_results

BACKBONE = Path("data/pretrain/backbone.pt")
SUPERVISED = Path("data/supervised/backbone.pt")
OUT = Path("data/linear")
# metrics.json (what `dvc metrics show` lists): the three backbones' top-1, the gain, the supervised share and
# the verdicts; details.json adds top-5, the spreads, per-seed values and the protocol.
HEADLINE = ("*.top1", "verdicts.*.top1.verdict")


def fixed_features(params) -> bool:
    """Train the head on features extracted once: eval.linear.fast_features, or a patch-bag method."""
    return params.eval.linear.fast_features or params.method in PATCH_METHODS


def evaluate_backbone(name: str, backbone, dim: int, params, device, loaders: dict, seeds: list[int]) -> dict:
    """One head per seed on the frozen backbone: {"top1": [per seed], "top5": [...], "curve": the first seed's}.

    loaders: the evaluation loaders, built once for every backbone (each ffcv Loader compiles its pipeline
    when built); "augmented_train" (the slow path) is a factory of a loader seeded like the head."""
    cfg = params.eval.linear
    backbone.to(device).eval()
    val = extract_features(backbone, loaders["val"], device)
    if len(val[0]) == 0:
        raise StageFailed("the classification val split is empty: linear evaluation needs val images")
    train = extract_features(backbone, loaders["train"], device) if fixed_features(params) else None
    out = {"top1": [], "top5": [], "curve": None, "val_features": val}
    for seed in seeds:
        def report(r):
            log.info("%s seed %d epoch %d/%d: loss %.3f, val top-1 %.4f", name, seed, r["epoch"], cfg.epochs,
                     r["train_loss"], r["val_top1"])

        if train is not None:
            classes = int(max(train[1].max(), val[1].max())) + 1
            result = fit_on_features(train, val, classes=classes, epochs=cfg.epochs, lr=cfg.lr,
                                     batch_size=cfg.batch_size, seed=seed, on_epoch=report)
        else:
            loader = loaders["augmented_train"](seed)  # fresh per backbone: all see the same augmentation draws
            classes = int(val[1].max()) + 1
            result = fit_on_loader(backbone, loader, len(loader), val, dim=dim, classes=max(classes, 2),
                                   epochs=cfg.epochs, lr=cfg.lr, device=device, seed=seed, on_epoch=report)
        out["top1"].append(result.top1)
        out["top5"].append(result.top5)
        out["curve"] = out["curve"] or result.curve
    return out


def main() -> None:
    def body(params):
        cfg = params.eval.linear
        device = pick_device(params.train.device)
        threads = {"torch_threads": os.cpu_count()} if device.type == "cpu" else {}
        arch, stem = params.model.arch, params.model.stem
        backbones = {"random_init": random_backbone(arch, stem, params.seed),
                     "pretrained": load_backbone(BACKBONE, arch, stem),
                     "supervised": load_backbone(SUPERVISED, arch, stem)}
        loaders = {"val": classification_eval_loader(params, "classification_val", device=device, **threads)}
        if fixed_features(params):
            loaders["train"] = classification_eval_loader(params, "classification_train", device=device, **threads)
        else:
            loaders["augmented_train"] = lambda seed: linear_train_loader(params, device=device, seed=seed, **threads)
        seeds = eval_seeds(params)
        results = {name: evaluate_backbone(name, net, dim, params, device, loaders, seeds)
                   for name, (net, dim) in backbones.items()}
        per_seed = {name: {k: r[k] for k in ("top1", "top5")} for name, r in results.items()}
        metrics = {name: backbone_block(values) for name, values in per_seed.items()}
        metrics["gain"] = {k: metrics["pretrained"][k] - metrics["random_init"][k] for k in ("top1", "top5")}
        metrics.update(compare(per_seed))
        metrics["protocol"] = {"epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size, "seeds": seeds,
                               "fast_features": fixed_features(params), "image_size": params.train.image_size,
                               "features": "patch_bag" if params.method in PATCH_METHODS else "centre_crop"}
        OUT.mkdir(parents=True, exist_ok=True)
        _write_curve(results)
        log.info("embedding picture: t-SNE of the val features of each backbone")
        embedding_picture(OUT / "embedding.png", {name: r["val_features"] for name, r in results.items()},
                          f"t-SNE of the classification val features ({arch}), coloured by class", seed=params.seed)
        line_plot(OUT / "curve.png", {name: ([c["epoch"] for c in r["curve"]], [c["val_top1"] for c in r["curve"]])
                                      for name, r in results.items()},
                  xlabel="head epoch", ylabel="val top-1",
                  title=f"linear evaluation, {arch}, seed {seeds[0]}"
                        f"{' (fast path: fixed features)' if fixed_features(params) else ''}")
        write_results(OUT, metrics, HEADLINE)
        verdict = metrics["verdicts"]["pretrained_vs_random_init"]["top1"]["verdict"]
        log.info("linear top-1 %.4f (random init %.4f, supervised %.4f; %d seeds): pretrained %s random init -> %s",
                 metrics["pretrained"]["top1"], metrics["random_init"]["top1"], metrics["supervised"]["top1"],
                 len(seeds), verdict, OUT / "metrics.json")

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
