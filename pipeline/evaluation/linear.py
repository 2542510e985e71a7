"""Linear evaluation of a frozen backbone (docs/method.md section 4): GAP features -> one Linear layer.

The backbone stays in eval mode (BN uses its running statistics) and never receives a gradient. The head
is trained with SGD (momentum 0.9, no weight decay), a linear warm-up over the first 10% of the epochs and
a cosine decay, as in the paper's protocol. Two ways to feed it:

- `fit_on_loader`: the protocol proper. Every epoch re-reads the training set through augmenting batches
  (random resized crop + flip), so the backbone runs once per image per epoch.
- `fit_on_features`: the fast path. Features of the un-augmented training images are extracted once and
  the head is trained on them; far cheaper, and reported as `fast_features: true` because it is not the
  paper's protocol (no crop augmentation of the head's inputs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..train.schedule import warmup_cosine

WARMUP_FRACTION = 0.1  # the paper: 10 warm-up epochs of 100


@dataclass
class LinearResult:
    top1: float
    top5: float
    curve: list[dict] = field(default_factory=list)  # per epoch: epoch, train_loss, val_top1, val_top5


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list[float]:
    """Share of rows whose label is among the k highest logits (k capped at the number of classes)."""
    if len(logits) == 0:
        raise ValueError("accuracy of an empty evaluation set is undefined")
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == labels.view(-1, 1)
    return [hits[:, :min(k, logits.shape[1])].any(1).float().mean().item() for k in ks]


class LinearProbe:
    """A linear head on frozen features, with the protocol's optimiser and schedule."""

    def __init__(self, dim: int, classes: int, *, lr: float, epochs: int, steps_per_epoch: int, seed: int = 0):
        if classes < 2:
            raise ValueError(f"linear evaluation needs at least 2 classes, got {classes}")
        if steps_per_epoch < 1:
            raise ValueError("linear evaluation needs at least one training batch per epoch")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = nn.Linear(dim, classes)
        self.opt = torch.optim.SGD(self.head.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
        self.lr, self.total = lr, epochs * steps_per_epoch
        self.warmup = round(WARMUP_FRACTION * self.total)
        self.step_count = 0

    def step(self, feats: torch.Tensor, labels: torch.Tensor) -> float:
        for g in self.opt.param_groups:
            g["lr"] = warmup_cosine(self.step_count, self.total, self.warmup, self.lr)
        loss = F.cross_entropy(self.head(feats), labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step_count += 1
        return loss.item()

    @torch.no_grad()
    def evaluate(self, feats: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        top1, top5 = topk_accuracy(self.head(feats), labels)
        return top1, top5


def _epoch_record(epoch: int, losses: list[float], probe: LinearProbe, val) -> dict:
    if not losses:
        raise ValueError(f"epoch {epoch}: the training batches were empty (an exhausted iterator?)")
    top1, top5 = probe.evaluate(*val)
    return {"epoch": epoch, "train_loss": sum(losses) / len(losses), "val_top1": top1, "val_top5": top5}


def fit_on_features(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], *,
                    classes: int, epochs: int, lr: float, batch_size: int, seed: int = 0,
                    on_epoch: Callable[[dict], None] | None = None) -> LinearResult:
    """Fast path: train the head on fixed (un-augmented) features, shuffled every epoch."""
    feats, labels = train
    steps = -(-len(feats) // batch_size)
    probe = LinearProbe(feats.shape[1], classes, lr=lr, epochs=epochs, steps_per_epoch=steps, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(feats), generator=gen)
        losses = [probe.step(feats[idx], labels[idx]) for idx in order.split(batch_size)]
        curve.append(_epoch_record(epoch, losses, probe, val))
        if on_epoch:
            on_epoch(curve[-1])
    return LinearResult(curve[-1]["val_top1"], curve[-1]["val_top5"], curve)


def fit_on_loader(backbone: nn.Module, train_batches: Iterable, steps_per_epoch: int,
                  val: tuple[torch.Tensor, torch.Tensor], *, dim: int, classes: int, epochs: int, lr: float,
                  device: torch.device, seed: int = 0,
                  on_epoch: Callable[[dict], None] | None = None) -> LinearResult:
    """The protocol: every epoch runs the frozen backbone on freshly augmented training batches.

    `train_batches` must be re-iterable (a loader or a list): it is read once per epoch.
    """
    backbone.eval()
    probe = LinearProbe(dim, classes, lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch, seed=seed)
    probe.head.to(device)
    val = (val[0].to(device), val[1].to(device))
    curve = []
    for epoch in range(1, epochs + 1):
        losses = []
        for images, labels in train_batches:
            with torch.no_grad():
                feats = backbone(images.to(device, non_blocking=True)).float()
            losses.append(probe.step(feats, labels.to(device)))
        curve.append(_epoch_record(epoch, losses, probe, val))
        if on_epoch:
            on_epoch(curve[-1])
    probe.head.cpu()
    return LinearResult(curve[-1]["val_top1"], curve[-1]["val_top5"], curve)
