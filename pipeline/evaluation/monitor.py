"""The pretraining monitor: kNN top-1 and a linear probe's top-1 of a backbone, on the classification sets.

The training loop only calls it (`Pretrainer(..., monitor=KnnLinearMonitor(...))`); it knows nothing of
how the figures are made, so training never imports evaluation code. The probe is the linear_eval stage's
fast path (a linear head trained on the un-augmented train features, eval.linear's epochs, lr and batch) on
the features the kNN already extracted: a few seconds per epoch on the embedded data.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..ffcv_io.sidecar import sidecar_path
from .knn import capped_k, extract_features, knn_top1
from .linear import fit_on_features


class KnnLinearMonitor:
    """`monitor(backbone)` -> {"knn_top1": float, "linear_top1": float} on the bank (train) and val loaders.
    The kNN's k is eval.knn.k capped at the smallest class's train count (`knn_k`, recorded in the metrics).

    Args:
        bank_loader, val_loader: classification eval loaders (centre crops, labels).
        knn: eval.knn (k, temperature); linear: eval.linear (epochs, lr, batch_size); seed: the probe's seed.
        device: where the features are extracted.
    """

    def __init__(self, bank_loader, val_loader, knn, linear, seed: int, device: torch.device):
        self.bank_loader, self.val_loader = bank_loader, val_loader
        self.knn, self.linear, self.seed, self.device = knn, linear, int(seed), device
        self.knn_k: int | None = None  # eval.knn.k capped at the smallest class's bank count (after a call)

    @property
    def data_files(self) -> list[Path]:
        """The sidecars of the .beton files it reads: what the figures depend on besides the weights."""
        return [sidecar_path(loader.beton) for loader in (self.bank_loader, self.val_loader)
                if hasattr(loader, "beton")]

    def __call__(self, backbone: nn.Module) -> dict[str, float]:
        bank = extract_features(backbone, self.bank_loader, self.device)
        val = extract_features(backbone, self.val_loader, self.device)
        classes = int(max(bank[1].max(), val[1].max())) + 1
        probe = fit_on_features(bank, val, classes=max(classes, 2), epochs=self.linear.epochs, lr=self.linear.lr,
                                batch_size=self.linear.batch_size, seed=self.seed)
        self.knn_k = capped_k(self.knn.k, bank[1])
        return {"knn_top1": knn_top1(*bank, *val, k=self.knn_k, temperature=self.knn.temperature),
                "linear_top1": probe.top1}

    def bank_k(self) -> int:
        """The kNN's k for this bank, also when no call has been made (a finished run resumed: one pass over the
        bank's labels)."""
        if self.knn_k is None:
            self.knn_k = capped_k(self.knn.k, torch.cat([torch.as_tensor(y) for _, y in self.bank_loader]))
        return self.knn_k


def classification_monitor(params, device: torch.device, **loader_options) -> KnnLinearMonitor:
    """The pretrain stage's monitor: the classification train (bank) and val sets' eval loaders, eval.knn,
    eval.linear and the run's seed. loader_options go to both loaders (e.g. torch_threads)."""
    from ..loaders.from_params import classification_eval_loader

    loaders = [classification_eval_loader(params, split, device=device, **loader_options)
               for split in ("classification_train", "classification_val")]
    return KnnLinearMonitor(*loaders, params.eval.knn, params.eval.linear, params.seed, device)
