"""The supervised reference: the pretraining backbone trained with the classification labels.

The positive control of every evaluation (docs/evaluation.md): the same architecture, resolution, training
images and optimisation budget as `pretrain` (train.epochs, batch_size, optimizer, lr, weight_decay,
warm-up + cosine), with cross-entropy on a linear head and the standard supervised augmentation, one
random-resized crop (convert.loader.crop_scale) and a flip per image (`loaders.eval.LinearTrainLoader`).
Each epoch reports the training loss and its head's top-1 on the val split. Resumable like pretraining:
a checkpoint at every epoch end, resumed only under the same parameters, data and code.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models import build_backbone, export_backbone_state_dict
from ..progress import track
from .checkpoint import atomic_save, load_run_checkpoint, rng_state, set_rng_state
from .fingerprint import run_fingerprint
from .optim import build_optimizer, set_lr
from .schedule import Budget, warmup_cosine

log = logging.getLogger("pipeline")


@dataclass
class SupervisedState:
    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, step, loss, lr, val_top1


class SupervisedTrainer:
    """`SupervisedTrainer(params, out_dir, train_loader, val_loader, classes, device)`, then `resume()`, `fit()`,
    `export()`. train_loader yields (images, labels) batches (drop_last: every step has the full batch);
    val_loader the val split's centre crops."""

    def __init__(self, params, out_dir: Path, train_loader, val_loader, classes: int, device: torch.device,
                 data_files=()):
        if classes < 2:
            raise ValueError(f"supervised training needs at least 2 classes, got {classes}")
        t = params.train
        self.params, self.out, self.device = params, Path(out_dir), device
        self.train_loader, self.val_loader = train_loader, val_loader
        torch.manual_seed(params.seed)
        self.backbone, dim = build_backbone(params.model.arch, params.model.stem)
        self.head = nn.Linear(dim, classes)
        self.model = nn.Sequential(self.backbone, self.head).to(device)
        self.optimizer = build_optimizer(t.optimizer, self.model.named_parameters(), t.lr, t.weight_decay, t.momentum)
        # pretraining's budget in images: one batch per step here, train.accumulate batches per step there
        self.budget = Budget(t, len(train_loader), step_scale=t.accumulate)
        self.steps_per_epoch, self.total_steps = self.budget.steps_per_epoch, self.budget.total_steps
        self.warmup_steps, self.epochs = self.budget.warmup_steps, self.budget.epochs
        self.state = SupervisedState()
        self.checkpoint_path = self.out / "checkpoint.pt"
        self.fingerprint = "supervised-" + run_fingerprint(params, data_files)

    def resume(self) -> bool:
        ckpt = load_run_checkpoint(self.checkpoint_path, self.fingerprint, map_location=self.device)
        if ckpt is None:
            return False
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.state = SupervisedState(ckpt["epoch"], ckpt["step"], [dict(h) for h in ckpt["history"]])
        set_rng_state(ckpt["rng"])
        log.info("resumed from %s at epoch %d", self.checkpoint_path, self.state.epoch)
        return True

    def _save(self) -> None:
        atomic_save({"fingerprint": self.fingerprint, "epoch": self.state.epoch, "step": self.state.step,
                     "history": self.state.history, "model": self.model.state_dict(),
                     "optimizer": self.optimizer.state_dict(), "rng": rng_state()}, self.checkpoint_path)

    @torch.no_grad()
    def val_top1(self) -> float:
        self.model.eval()
        correct = total = 0
        for images, labels in self.val_loader:
            predicted = self.model(images.to(self.device)).argmax(1).cpu()
            correct += (predicted == labels).sum().item()
            total += len(labels)
        self.model.train()
        if total == 0:
            raise ValueError("the classification val split is empty: the supervised reference needs val images")
        return correct / total

    def fit(self) -> SupervisedState:
        t = self.params.train
        self.model.train()
        for epoch in range(self.state.epoch, self.epochs):
            self.train_loader.set_epoch(epoch)
            total, n, lr = 0.0, 0, 0.0
            for i, (images, labels) in enumerate(self._progress(epoch)):
                if i >= self.budget.steps_in_epoch(epoch):
                    break
                lr = warmup_cosine(self.state.step, self.total_steps, self.warmup_steps, t.lr)
                set_lr(self.optimizer, lr)
                loss = F.cross_entropy(self.model(images.to(self.device)), labels.to(self.device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"supervised step {self.state.step}: loss = {loss.item()}; lower "
                                             f"train.lr; last good checkpoint kept at {self.checkpoint_path}")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.state.step += 1
                total, n = total + loss.item(), n + 1
            row = {"epoch": epoch + 1, "step": self.state.step, "loss": total / max(n, 1), "lr": lr,
                   "val_top1": self.val_top1()}
            self.state.epoch = epoch + 1
            self.state.history.append(row)
            log.info("epoch %d/%d: loss %.4f, lr %.3g, val top-1 %.4f", epoch + 1, self.epochs, row["loss"], lr,
                     row["val_top1"])
            self._save()
        return self.state

    def _progress(self, epoch: int):
        return track(self.train_loader, f"supervised epoch {epoch + 1}/{self.epochs}",
                     total=self.budget.steps_in_epoch(epoch), unit="batches")

    def export(self) -> dict:
        return export_backbone_state_dict(self.backbone)
