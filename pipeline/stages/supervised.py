"""Stage `supervised`: the supervised reference backbone, the positive control of every evaluation.

The pretraining backbone's architecture, resolution, images and optimisation budget, trained with the
classification labels (cross-entropy, random-resized crop + flip; `pipeline/train/supervised.py`). Outputs in
data/supervised/: backbone.pt (a plain torchvision state_dict, as pretrain's), metrics.json (epochs, steps,
final loss, its head's val top-1) and curve.csv (loss and val top-1 per epoch, a DVC plot). checkpoint.pt
there is the resume state (not a DVC output).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ..ffcv_io.datasets import read_manifest
from ..ffcv_io.sidecar import sidecar_path
from ..io_safety import atomic_write
from ..loaders.from_params import classification_eval_loader, linear_train_loader
from ..train.checkpoint import atomic_save
from ..train.loop import pick_device
from ..train.supervised import SupervisedTrainer
from ._common import StageFailed, log, run_stage, write_metrics

OUT = Path("data/supervised")
MANIFEST = Path("data/validated/manifests/classification.csv")


def class_count(manifest: Path = MANIFEST) -> int:
    """Classes of the validated classification manifest (labels are 0..n-1)."""
    if not manifest.is_file():
        raise StageFailed(f"{manifest} not found: run `dvc repro validate` first")
    labels = read_manifest(manifest)["label"]
    return int(labels.max()) + 1 if len(labels) else 0


def main() -> None:
    def body(params):
        device = pick_device(params.train.device)
        threads = {"torch_threads": os.cpu_count()} if device.type == "cpu" else {}
        t = params.train
        # The pretraining budget: its batch, every batch full (drop_last), crops as the pretraining pair's.
        train = linear_train_loader(params, device=device, batch_size=t.batch_size, drop_last=True, **threads)
        # Its own head's accuracy on centre crops, whatever the self-supervised method's evaluation features.
        val = classification_eval_loader(params, "classification_val", device=device, patch_bags=False, **threads)
        try:
            trainer = SupervisedTrainer(params, OUT, train, val, class_count(), device,
                                        data_files=[sidecar_path(train.beton), sidecar_path(val.beton)])
        except ValueError as e:
            raise StageFailed(str(e)) from None
        trainer.resume()
        try:
            state = trainer.fit()
        except FloatingPointError as e:
            raise StageFailed(str(e)) from None
        atomic_save(trainer.export(), OUT / "backbone.pt")
        last = state.history[-1]
        with atomic_write(OUT / "curve.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", "loss", "val_top1"])
            writer.writerows([row["epoch"], f"{row['loss']:.4f}", f"{row['val_top1']:.4f}"] for row in state.history)
        write_metrics(OUT / "metrics.json", {"epochs": state.epoch, "steps": state.step, "final_loss": last["loss"],
                                             "val_top1": last["val_top1"]})
        log.info("supervised reference: val top-1 %.4f after %d steps; backbone: %s", last["val_top1"], state.step,
                 OUT / "backbone.pt")

    run_stage("supervised", body)


if __name__ == "__main__":
    main()
