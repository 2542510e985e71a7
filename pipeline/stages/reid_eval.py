"""Stage `reid_eval`: SYSU-30k person re-identification by direct retrieval (docs/method.md section 4).

The pretrained backbone (data/pretrain/backbone.pt), its random-init twin (the pretrain stage's starting
weights, `seed`) and the supervised reference (data/supervised/backbone.pt) are evaluated with the same
protocol: each image resized to eval.reid.height x width
(bicubic), ImageNet-normalised, layer4 global-average-pooled feature of the image plus that of its
horizontal flip, L2-normalised, cosine ranking of the gallery (pipeline.evaluation.reid). Outputs in
data/reid/: metrics.json (each backbone's rank-1/5/10 and mAP, the gain, and a verdict per backbone pair:
retrieval is deterministic, so backbones are compared query by query, docs/evaluation.md) and top5.png (a few queries with
their first five gallery images under the pretrained backbone; green = true match, red = wrong).

With eval.reid.adapt_epochs = N > 0, each backbone is first trained N more epochs, self-supervised, on the
SYSU-30k training images (data/beton/sysu_train.beton; the bag labels are not used), as the paper does (10
epochs) before retrieval: the pretrain stage's method and loop (pipeline.evaluation.adapt: SiameseModel,
params.loss, BYOL two-view augmentations, EMA target, train.optimizer with warm-up + cosine) on
eval.reid.adapt_height x adapt_width crops (default 128 x 64, half the retrieval size: the embedded images'
own size), eval.reid.adapt_batch_size images per batch, lr eval.reid.adapt_lr (null = train.lr). Every
backbone is adapted, with the same heads' seed, schedule and batches, so the comparison stays like for
like ("+ N adaptation epochs" for all), once per seed in eval.seeds, compared seed by seed. metrics.json records
the adaptation under "protocol" (epochs, steps, lr, final loss of each backbone).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..evaluation.adapt import TooFewBatches, adapt_backbone
from ..evaluation.backbone_io import load_backbone, random_backbone
from ..evaluation.compare import backbone_block, compare
from ..evaluation.plots import save_figure
from ..evaluation.reid import DISTRACTOR_ID, evaluate, top_k
from ..ffcv_io.datasets import MANIFESTS, plan_for, read_manifest, selected_rows
from ..ffcv_io.sidecar import read_layout
from ..loaders.from_params import reid_eval_loader, ssl_loader
from ..progress import track
from ..train.loop import TrainingDiverged, pick_device
from ._common import StageFailed, eval_seeds, log, run_stage, skipped, write_results

BACKBONE = Path("data/pretrain/backbone.pt")
SUPERVISED = Path("data/supervised/backbone.pt")
OUT = Path("data/reid")
# metrics.json: mAP and rank-1 per backbone, gain, supervised share, verdicts, status; details.json: the rest.
HEADLINE = ("*.mAP", "*.rank1", "verdicts.*.mAP.verdict", "verdicts.*.rank1.verdict", "status")
METRICS = ("rank1", "rank5", "rank10", "mAP")
COUNTS = ("queries", "queries_evaluated", "queries_without_match", "gallery")
PICTURE_QUERIES = 3


@torch.inference_mode()
def extract(loader, backbones: dict[str, torch.nn.Module], device: torch.device, desc: str):
    """One pass over the loader for all backbones: ({name: features [N, D] float32 on CPU}, ids, cams).

    Feature = backbone(image) + backbone(flipped image), not yet normalised (evaluate normalises).
    Distractors get DISTRACTOR_ID whatever their stored label, so that they can never match a query.
    """
    for model in backbones.values():
        # channels_last: 1.5x faster convolutions on the 2-core CPU (measured), also the fast layout on CUDA.
        model.eval().to(device, memory_format=torch.channels_last)
    feats = {name: [] for name in backbones}
    ids, cams = [], []
    for images, label, camera, distractor in track(loader, desc, unit="batches"):
        both = torch.cat([images, images.flip(3)]).contiguous(memory_format=torch.channels_last)
        for name, model in backbones.items():
            f = model(both).float()
            feats[name].append((f[: len(images)] + f[len(images):]).cpu())
        ids.append(torch.where(distractor.bool(), torch.full_like(label, DISTRACTOR_ID), label).cpu())
        cams.append(camera.cpu())
    if not ids:
        return {name: torch.empty(0, 0) for name in backbones}, torch.empty(0, dtype=torch.int64), \
            torch.empty(0, dtype=torch.int64)
    return {name: torch.cat(f) for name, f in feats.items()}, torch.cat(ids), torch.cat(cams)


def _split_rows(params, name: str):
    plan = plan_for(params, name)
    manifest = MANIFESTS / plan.manifest
    if not manifest.is_file():
        raise StageFailed(f"{manifest}: manifest not found (run the validate stage first)")
    return plan, manifest, selected_rows(plan, read_manifest(manifest), manifest)


def _check_sets(params) -> dict:
    """The manifest rows of the query and gallery splits; a clear error when either is empty."""
    rows = {}
    for name in ("sysu_query", "sysu_gallery"):
        plan, manifest, table = _split_rows(params, name)
        if table.empty:
            raise StageFailed(f"{manifest}: no rows with split {plan.split!r} (the {name.split('_')[1]} set is "
                              f"empty); SYSU-30k retrieval needs at least one query and one gallery image")
        rows[name] = (Path(plan.root), table)
    return rows


def _picture(path: Path, rows: dict, feats: dict[str, dict], sets: dict, title: str) -> None:
    """A few queries (with a true match) and, for every backbone, their first five gallery images: one row per
    query and backbone, matches green, others red. feats: backbone -> split -> features."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    (q_ids, q_cams), (g_ids, g_cams) = sets["query"], sets["gallery"]
    ranked = {name: top_k(f["query"], q_ids, q_cams, f["gallery"], g_ids, g_cams, 5) for name, f in feats.items()}
    has_match = [i for i in range(len(q_ids)) if ((g_ids == q_ids[i]) & (g_cams != q_cams[i])).any()]
    chosen = [has_match[int(j)] for j in np.linspace(0, len(has_match) - 1, min(PICTURE_QUERIES, len(has_match)))]
    (q_root, q_rows), (g_root, g_rows) = rows["sysu_query"], rows["sysu_gallery"]
    lines = [(qi, name) for qi in chosen for name in feats]
    fig, axes = plt.subplots(len(lines), 6, figsize=(6 * 1.2, len(lines) * 2.1), squeeze=False)
    for r, (qi, name) in enumerate(lines):
        idx, good = ranked[name]
        cells = [(q_root / q_rows["path"][qi], f"query {q_rows['identity'][qi]}", "black")]
        for k in range(5):
            gi = int(idx[qi, k])
            if gi >= 0:
                cells.append((g_root / g_rows["path"][gi], f"#{k + 1} {g_rows['identity'][gi]}",
                              "tab:green" if good[qi, k] else "tab:red"))
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.axis("off")
                continue
            file, label, colour = cells[c]
            with Image.open(file) as im:
                ax.imshow(np.asarray(im.convert("RGB")))
            ax.set_title(label, fontsize=7, color=colour)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3 if c else 1)
        axes[r][0].set_ylabel(name.replace("_", " "), fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def adapt(params, backbones: dict[str, torch.nn.Module], device: torch.device, threads: dict):
    """Every backbone adapted on sysu_train with one loader replayed for each; (backbones, protocol entry)."""
    cfg = params.eval.reid
    loader = ssl_loader(params, "sysu_train", device=device, batch_size=cfg.adapt_batch_size,
                        image_size=(cfg.adapt_height, cfg.adapt_width), local_views=0, **threads)  # no multi-crop
    adapted, results = {}, {}
    for name, backbone in backbones.items():
        try:
            adapted[name], results[name] = adapt_backbone(backbone, params, loader, device, name=name)
        except TrainingDiverged as e:
            raise StageFailed(str(e)) from None
        except TooFewBatches as e:  # name the file and the keys to change
            raise StageFailed(f"{loader.beton}: {read_layout(loader.beton)[0]} training images; {e}. Lower "
                              f"eval.reid.adapt_batch_size (now {cfg.adapt_batch_size}) or train.accumulate, or "
                              "set eval.reid.adapt_epochs = 0") from None
    first = next(iter(results.values()))
    entry = {"data": "sysu_train", "epochs": first.epochs, "steps": first.steps,
             "steps_per_epoch": first.steps_per_epoch, "batch_size": cfg.adapt_batch_size,
             "height": cfg.adapt_height, "width": cfg.adapt_width, "lr": first.lr,
             "warmup_epochs": cfg.adapt_warmup_epochs, "optimizer": params.train.optimizer, "loss": params.loss.name,
             "final_loss": {name: r.final_loss for name, r in results.items()}}
    return adapted, entry


def main() -> None:
    def body(params):
        if skipped("sysu", params, OUT / "metrics.json", OUT / "top5.png"):
            return
        cfg = params.eval.reid
        rows = _check_sets(params)
        device = pick_device(params.train.device)
        threads = {"torch_threads": os.cpu_count()} if device.type == "cpu" else {}
        arch, stem = params.model.arch, params.model.stem
        start = {"random_init": random_backbone(arch, stem, params.seed)[0],
                 "pretrained": load_backbone(BACKBONE, arch, stem)[0],
                 "supervised": load_backbone(SUPERVISED, arch, stem)[0]}
        loaders = {split: reid_eval_loader(params, f"sysu_{split}", device=device, **threads)
                   for split in ("query", "gallery")}
        # Retrieval alone is deterministic: one run, backbones compared query by query. Adaptation trains:
        # one run per seed, backbones compared seed by seed.
        seeds = eval_seeds(params) if cfg.adapt_epochs > 0 else [params.seed]
        per_seed = {name: {k: [] for k in METRICS} for name in start}
        adaptation, feats, sets, last = None, {}, {}, {}
        for seed in seeds:
            backbones = start
            if cfg.adapt_epochs > 0:
                backbones, adaptation = adapt(params.model_copy(update={"seed": seed}), start, device, threads)
            for split, loader in loaders.items():
                feats[split], *sets[split] = extract(loader, backbones, device, split)
            for name in backbones:
                try:
                    last[name] = evaluate(feats["query"][name], *sets["query"], feats["gallery"][name],
                                          *sets["gallery"], per_query=True)
                except ValueError as e:
                    raise StageFailed(f"{name} backbone: {e}") from None
                for k in METRICS:
                    per_seed[name][k].append(last[name][k])
                log.info("%s (seed %d): rank-1 %.4f rank-5 %.4f rank-10 %.4f mAP %.4f", name, seed,
                         last[name]["rank1"], last[name]["rank5"], last[name]["rank10"], last[name]["mAP"])
        metrics = {name: {**backbone_block(values), **{k: last[name][k] for k in COUNTS}}
                   for name, values in per_seed.items()} | {"status": "measured"}
        metrics["gain"] = {k: metrics["pretrained"][k] - metrics["random_init"][k] for k in METRICS}
        by_query = None if cfg.adapt_epochs > 0 else {
            name: {k: r["per_query"]["AP" if k == "mAP" else k] for k in METRICS} for name, r in last.items()}
        metrics.update(compare(per_seed, by_query))
        metrics["protocol"] = {"height": cfg.height, "width": cfg.width, "flip": True, "adapt_epochs": cfg.adapt_epochs,
                               "seeds": seeds, "compared": "per seed" if cfg.adapt_epochs > 0 else "per query"}
        if adaptation is not None:
            metrics["protocol"]["adaptation"] = adaptation

        OUT.mkdir(parents=True, exist_ok=True)
        p = last["pretrained"]
        _picture(OUT / "top5.png", rows, {name: {s: feats[s][name] for s in feats} for name in last}, sets,
                 f"{arch}{f' + {cfg.adapt_epochs} SYSU adaptation epoch(s)' if adaptation else ''}, top-5 per backbone; "
                 + ", ".join(f"{name.replace('_', ' ')} mAP {r['mAP']:.3f}" for name, r in last.items())
                 + f" ({p['queries_evaluated']} queries, {p['gallery']} gallery images)")
        write_results(OUT, metrics, HEADLINE)
        v = metrics["verdicts"]
        log.info("mAP: pretrained %.4f, random init %.4f, supervised %.4f; pretrained %s random init, supervised %s "
                 "random init -> %s", metrics["pretrained"]["mAP"], metrics["random_init"]["mAP"],
                 metrics["supervised"]["mAP"], v["pretrained_vs_random_init"]["mAP"]["verdict"],
                 v["supervised_vs_random_init"]["mAP"]["verdict"], OUT / "metrics.json")

    run_stage("reid_eval", body)


if __name__ == "__main__":
    main()
