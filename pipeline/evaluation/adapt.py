"""Self-supervised adaptation of a backbone on the SYSU-30k training images, before retrieval.

docs/method.md section 4: the paper trains its self-supervised ImageNet model 10 more epochs, self-supervised,
on the SYSU-30k training images (LARS 4.8, 2 warm-up epochs) before direct retrieval.

The method is the pretrain stage's, run by the pretrain stage's own loop (`pipeline.train.loop.Pretrainer`,
whose `_step` does the forward, loss, optimizer step, schedules and EMA update): the `SiameseModel`
(params.model heads), the configured loss (params.loss via `build_loss`), two BYOL-augmented views from the
`SSLLoader` the caller passes (reid_eval: sysu_train.beton cut into eval.reid.adapt_height x adapt_width crops),
the EMA target with the cosine momentum schedule from train.base_ema, train.optimizer / weight_decay /
momentum / precision / accumulate / channels_last / random_resolution, and linear warm-up + cosine decay of
the lr. `adapt_params` swaps in only what the adaptation owns: epochs (eval.reid.adapt_epochs), batch
(eval.reid.adapt_batch_size), lr (eval.reid.adapt_lr; null = train.lr, as the paper re-uses its pretraining
lr) and warm-up (eval.reid.adapt_warmup_epochs). Whatever the pretraining recipe becomes, adaptation follows.

What differs from pretraining, and why:
- the backbone starts from the given weights; the projector and predictor start fresh from `seed`
  (backbone.pt carries no heads) and the EMA target starts as a copy of the online network;
- no kNN / linear-probe monitor (there is no classification set here; the stage measures retrieval) and no
  checkpoints (a short run: DVC re-runs the whole stage);
- the bag labels never reach the loss; the loop only uses them for the false-negative diagnostic it logs.

    backbone, result = adapt_backbone(backbone, params, ssl_loader(params, "sysu_train", ...), device)
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..models import build_backbone, export_backbone_state_dict
from ..train.distributed import DistInfo
from ..train.loop import Pretrainer, TrainingDiverged

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class AdaptResult:
    epochs: int
    steps: int
    steps_per_epoch: int
    lr: float  # the peak (base) lr of the warm-up + cosine schedule
    epoch_losses: tuple[float, ...]  # mean symmetrised loss of each epoch
    seconds: float

    @property
    def final_loss(self) -> float:
        return self.epoch_losses[-1]


class TooFewBatches(ValueError):
    """The adaptation loader gives no full optimizer step per epoch."""


def adapt_params(params):
    """params as the Pretrainer reads them, with train.* replaced by the adaptation's own settings."""
    reid, train = params.eval.reid, params.train
    # Re-validated (not model_copy) so that the substituted values pass train.*'s own checks too.
    adapted = type(train).model_validate({
        **train.model_dump(), "epochs": reid.adapt_epochs, "batch_size": reid.adapt_batch_size,
        "lr": reid.adapt_lr if reid.adapt_lr is not None else train.lr,
        "warmup_epochs": reid.adapt_warmup_epochs, "steps": None, "warmup_steps": None})  # adaptation counts epochs
    return params.model_copy(update={"train": adapted})


class _Adapter(Pretrainer):
    """The pretraining loop without checkpoints (and, built without one, without a monitor)."""

    def save_checkpoint(self) -> None:
        pass


def adapt_backbone(backbone: nn.Module, params, loader, device: torch.device,
                   name: str = "backbone") -> tuple[nn.Module, AdaptResult]:
    """Train `backbone` eval.reid.adapt_epochs more epochs, self-supervised, on `loader`'s two-view batches.

    Returns a new backbone (same architecture, CPU, eval mode) and what the run did; the input module is
    left untouched. Deterministic on the CPU for the same weights, params and loader state. The loader's
    augmentation state is restored afterwards, so several backbones adapted with one loader see the same
    batches (like for like). Raises TooFewBatches (a ValueError) if the loader gives no full optimizer step
    per epoch and TrainingDiverged (naming `name`) if the loss stops being finite.
    """
    if params.eval.reid.adapt_epochs < 1:  # before adapt_params, whose train.* validation would say "epochs"
        raise ValueError(f"eval.reid.adapt_epochs = {params.eval.reid.adapt_epochs}: nothing to adapt (expected >= 1)")
    p = adapt_params(params)
    if len(loader) < p.train.accumulate:
        raise TooFewBatches(f"the adaptation loader gives {len(loader)} batch(es) per epoch, fewer than one optimizer "
                         f"step of {p.train.batch_size} x train.accumulate = {p.train.accumulate} (full batches only)")
    start = loader.augment_state() if hasattr(loader, "augment_state") else None
    trainer = _Adapter(p, Path("."), loader, DistInfo(), device)
    weights = export_backbone_state_dict(backbone)
    trainer.model.load_backbone(weights)  # a target network, if the method has one, starts as the online one
    log.info("adapting the %s backbone on SYSU-30k: %d epoch(s) x %d steps, batch %d, lr %g (%s), "
             "warm-up %g epoch(s)", name, p.train.epochs, trainer.steps_per_epoch, p.train.batch_size, p.train.lr,
             p.train.optimizer, p.train.warmup_epochs)
    t0 = time.perf_counter()
    try:
        state = trainer.fit()
    except TrainingDiverged:
        raise TrainingDiverged(
            f"SYSU-30k adaptation of the {name} backbone diverged at step {trainer.state.step} of "
            f"{trainer.total_steps} (loss not finite): lower eval.reid.adapt_lr (null = train.lr = "
            f"{params.train.lr}) or check the data") from None
    finally:
        if start is not None:
            loader.set_augment_state(start)
    seconds = time.perf_counter() - t0
    losses = tuple(row["loss"] for row in state.history)  # finite: the loop stops at the first non-finite step
    adapted, _ = build_backbone(params.model.arch, params.model.stem)
    adapted.load_state_dict(export_backbone_state_dict(trainer.model.backbone))
    result = AdaptResult(epochs=state.epoch, steps=state.step, steps_per_epoch=trainer.steps_per_epoch,
                         lr=p.train.lr, epoch_losses=losses, seconds=seconds)
    log.info("%s backbone adapted: %d steps in %.1f s, final epoch loss %.4f", name, result.steps, seconds,
             result.final_loss)
    return adapted.eval(), result
