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

# Below these, the monitor's figures say little and the stage says so (pretrain metrics: monitor_notes).
MIN_VAL_IMAGES = 500  # one image is 0.2 points of top-1; the binomial SE near 50% is 2.2 points
MIN_PROBE_PER_CLASS = 10  # training features per class for a stable linear probe
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
        self._sizes: tuple[int, int] | None = None  # (smallest class's bank count, val images), after a call

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
        self._sizes = (_smallest_class(bank[1]), len(val[1]))
        return {"knn_top1": knn_top1(*bank, *val, k=self.knn_k, temperature=self.knn.temperature),
                "linear_top1": probe.top1}

    def notes(self) -> list[str]:
        """What makes the figures weak on this data, in words (empty when nothing does); after a call or bank_k()."""
        if self._sizes is None:
            bank = torch.cat([torch.as_tensor(y) for _, y in self.bank_loader])
            self._sizes = (_smallest_class(bank), sum(len(y) for _, y in self.val_loader))
            self.knn_k = capped_k(self.knn.k, bank)
        smallest, val = self._sizes
        out = []
        if self.knn_k < self.knn.k:
            out.append(f"kNN: k capped at {self.knn_k} (eval.knn.k = {self.knn.k}): the smallest class has {smallest} "
                       "training images")
        if smallest < MIN_PROBE_PER_CLASS:
            out.append(f"linear probe: the smallest class has {smallest} training images (below "
                       f"{MIN_PROBE_PER_CLASS}, the probe's top-1 is unstable)")
        if val < MIN_VAL_IMAGES:
            out.append(f"{val} validation images: one image is {100 / max(val, 1):.2f} points of top-1, and the "
                       f"binomial standard error near 50% is {50 / max(val, 1) ** 0.5:.1f} points; smaller "
                       "differences are noise")
        return out

    def bank_k(self) -> int:
        """The kNN's k for this bank, also when no call has been made (a finished run resumed: one pass over the
        bank's labels)."""
        if self.knn_k is None:
            self.knn_k = capped_k(self.knn.k, torch.cat([torch.as_tensor(y) for _, y in self.bank_loader]))
        return self.knn_k


def _smallest_class(labels: torch.Tensor) -> int:
    counts = torch.bincount(torch.as_tensor(labels).long())
    counts = counts[counts > 0]
    return int(counts.min()) if len(counts) else 0


def classification_monitor(params, device: torch.device, **loader_options) -> KnnLinearMonitor:
    """The pretrain stage's monitor: the classification train (bank) and val sets' eval loaders, eval.knn,
    eval.linear and the run's seed. loader_options go to both loaders (e.g. torch_threads)."""
    from ..loaders.from_params import classification_eval_loader

    loaders = [classification_eval_loader(params, split, device=device, **loader_options)
               for split in ("classification_train", "classification_val")]
    return KnnLinearMonitor(*loaders, params.eval.knn, params.eval.linear, params.seed, device)
