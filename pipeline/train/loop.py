"""The pretraining loop: two-view batches -> symmetrised loss -> optimizer step -> EMA target update.

One `Pretrainer` owns the model, optimizer, loss, train loader and run state; the figures it logs come
from the monitor it is given (training imports no evaluation code: docs/architecture.md). Epoch ends are the unit of
resumption: a checkpoint (model, optimizer, step, RNG and augmentation generator states, history) is
written atomically every `train.checkpoint_every` epochs, and a killed run restarted with the same
parameters continues from it and reproduces an uninterrupted run on CPU.
"""
from __future__ import annotations

import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..ffcv_io.sidecar import sidecar_path
from ..losses import LOSSES, build_loss, false_negative_rates, hardest_false_negative_rate, loss_hyperparameters
from ..losses.truncated_triplet import expected_false_negatives
from ..methods.registry import build_method
from ..models.siamese import ema_momentum
from ..progress import track
from . import distributed as dist_utils
from .checkpoint import atomic_save, load_run_checkpoint, rng_state, set_rng_state
from .device import check_device
from .fingerprint import run_fingerprint
from .optim import build_optimizer, set_lr
from .schedule import Budget, warmup_cosine

log = logging.getLogger("pipeline")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list[dict] = field(default_factory=list)  # one row of metrics per completed epoch
    random_init: dict | None = None  # the monitor's figures for the starting weights


def pick_device(kind: str) -> torch.device:
    check_device(kind)  # 'cuda' without CUDA: the one-line params error check_params gives
    if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def random_resize(x: torch.Tensor, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """The official model's undocumented trick: resize the whole batch to one random square size.

    Non-square views (reid_eval's SYSU-30k adaptation) are scaled by the same random factor on both sides,
    keeping their aspect ratio; square views get exactly the square sizes of the official trick.
    """
    height, width = x.shape[-2:]
    factor = lo + (hi - lo) * torch.rand(1, generator=gen).item()
    size = (int(round(height * factor)), int(round(width * factor)))
    if size == (height, width):
        return x
    return nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


class Pretrainer:
    """The pretraining run: `Pretrainer(params, out_dir, train_loader, dist, device, monitor)`, then
    `resume()` and `fit()`.

    monitor: called with the online backbone before training (the random-init baseline) and after every
    `train.monitor_every` epochs; returns figures to log (e.g. `evaluation.monitor.KnnLinearMonitor`'s kNN
    and linear-probe top-1). None: no figures (benchmarks, the SYSU-30k adaptation). It may have
    `data_files` (the files its figures depend on), which enter the run's fingerprint.
    """

    def __init__(self, params, out_dir: Path, train_loader, dist: dist_utils.DistInfo, device: torch.device,
                 monitor=None):
        self.p, self.out, self.dist, self.device = params, Path(out_dir), dist, device
        self.train_loader, self._monitor = train_loader, monitor
        t = params.train
        torch.manual_seed(params.seed)  # the same initial weights on every rank (DDP also broadcasts)
        m = params.model
        self.model = build_method(params).to(device)  # pipeline/methods: params.method with params.model's widths
        if dist.enabled and m.sync_bn and device.type == "cuda":
            # torch's SyncBatchNorm runs on CUDA only; CPU (gloo) processes keep per-process BN statistics.
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ddp = (nn.parallel.DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda"
                                                        else None) if dist.enabled else self.model)
        self.optimizer = build_optimizer(t.optimizer, self.model.online_parameters(), t.lr, t.weight_decay, t.momentum)
        self.scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
        self.loss_fn = build_loss(params.loss.name, **self._loss_kwargs())
        self.budget = Budget(t, len(self.train_loader) // t.accumulate)
        self.steps_per_epoch, self.total_steps = self.budget.steps_per_epoch, self.budget.total_steps
        self.warmup_steps, self.epochs = self.budget.warmup_steps, self.budget.epochs
        self.resize_gen = torch.Generator().manual_seed(params.seed * 7 + dist.rank)
        self.state = RunState()
        data_files = [sidecar_path(train_loader.beton)] if hasattr(train_loader, "beton") else []
        self.fingerprint = run_fingerprint(params, data_files + list(getattr(monitor, "data_files", ())))
        self.checkpoint_path = self.out / "checkpoint.pt"

    # --- setup ---------------------------------------------------------------------------------------
    def _loss_kwargs(self) -> dict:
        l = self.p.loss
        kwargs = {k: getattr(l, k) for k in loss_hyperparameters(l.name)}
        if getattr(LOSSES[l.name], "selects_negatives", False):
            gathered = self._gathered()
            if l.auto:  # from the expected false negatives in the pool the loss ranks (docs/methods.md)
                kwargs["k"], kwargs["k_end"] = l.ranks(self._pool(), self.p.data.num_classes)
            elif gathered:
                # docs/method.md section 2: expected false negatives grow with the pool, so the ranks scale with it.
                kwargs["k"], kwargs["k_end"] = l.k * self.dist.world_size, l.k_end * self.dist.world_size
        return kwargs

    def _gathered(self) -> bool:
        return bool(getattr(self.p.loss, "gather_negatives", False)) and self.dist.enabled

    def _pool(self) -> int:
        """Images one query's negatives come from: the per-process batch, or all processes' when gathered."""
        return self.p.train.batch_size * (self.dist.world_size if self._gathered() else 1)

    def ranks(self) -> dict:
        """The deputy ranks the loss uses (after `auto` and pool scaling), for the metrics; {} for other losses."""
        if not hasattr(self.loss_fn, "k_end"):
            return {}
        out = {"loss_k": self.loss_fn.k, "loss_k_end": self.loss_fn.k_end}
        if self.p.data.num_classes:
            out["expected_false_negatives"] = expected_false_negatives(self._pool(), self.p.data.num_classes)
        return out

    def resume(self) -> bool:
        """Load the checkpoint if it belongs to this run (same parameters and code); True if resumed."""
        ckpt = load_run_checkpoint(self.checkpoint_path, self.fingerprint, map_location=self.device)
        if ckpt is None:
            return False
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = RunState(ckpt["epoch"], ckpt["step"], [dict(h) for h in ckpt["history"]],
                              ckpt["random_init"])
        set_rng_state(ckpt["rng"])
        self.resize_gen.set_state(ckpt["resize_gen"])
        if ckpt["augment"] is not None:
            self.train_loader.set_augment_state(ckpt["augment"])
        log.info("resumed from %s at epoch %d (step %d)", self.checkpoint_path, self.state.epoch, self.state.step)
        return True

    def save_checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        atomic_save({
            "fingerprint": self.fingerprint, "epoch": self.state.epoch, "step": self.state.step,
            "history": self.state.history, "random_init": self.state.random_init,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "resize_gen": self.resize_gen.get_state(),
            # Loaders that augment on the device replay their generators; in-memory batches have none.
            "augment": self.train_loader.augment_state() if hasattr(self.train_loader, "augment_state") else None,
        }, self.checkpoint_path)

    # --- monitoring ----------------------------------------------------------------------------------
    def monitor(self, when: str = "") -> dict:
        """The monitor's figures for the online backbone (rank 0), or {} without a monitor."""
        if self._monitor is None:
            return {}
        log.info("monitor%s: kNN and linear probe on the frozen backbone", f" ({when})" if when else "")
        return dict(self._monitor(self.model.backbone))

    # --- training ------------------------------------------------------------------------------------
    def _step(self, batch, micro: int, sums: dict) -> None:
        t = self.p.train
        view1, view2, labels, *rest = batch  # rest: the SSLBatch's multi-crop views, if any
        local = tuple(rest[0]) if rest else ()
        if t.channels_last:
            view1, view2, *local = (v.contiguous(memory_format=torch.channels_last) for v in (view1, view2, *local))
        if t.random_resolution:
            view1 = random_resize(view1, 96 / 224, 1.0, self.resize_gen)
            view2 = random_resize(view2, 128 / 224, 1.0, self.resize_gen)
        last_micro = (micro + 1) % t.accumulate == 0
        sync = self.ddp.no_sync() if (self.dist.enabled and not last_micro) else nullcontext()
        with sync, autocast_for(self.device, t.precision):
            loss, parts, stats = self._forward(view1, view2, labels, tuple(local))
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"step {self.state.step}: loss = {loss.item()} ("
                f"{', '.join(f'{name} = {value.item():.4g}' for name, value in parts.items())}); "
                f"last good checkpoint kept at {self.checkpoint_path}; "
                "lower train.lr or check the data")
        with sync:
            self.scaler.scale(loss / t.accumulate).backward()
        sums["loss"] += loss.item()
        sums["n"] += 1
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value
        if last_micro:
            lr = warmup_cosine(self.state.step, self.total_steps, self.warmup_steps, t.lr)
            set_lr(self.optimizer, lr)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            momentum = ema_momentum(t.base_ema, self.state.step, self.total_steps)
            self.model.update_target(momentum)
            self.state.step += 1
            sums["lr"], sums["ema"] = lr, momentum

    def _forward(self, view1, view2, labels, local=()):
        """Symmetrised loss through DDP; false-negative rates of the selected ranks when labels exist."""
        if not getattr(self.loss_fn, "selects_negatives", False):
            # No deputy negative to audit, but the hardest-negative rate (same definition as the triplet's
            # fn_hardest, view 1 -> view 2, local batch) makes the diagnostic comparable across losses.
            loss, parts, (queries, keys) = self.ddp(view1, view2, self.loss_fn, local=local)
            rate = hardest_false_negative_rate(queries, keys, labels.to(queries.device))
            return loss, parts, {"fn_hardest": rate.item()}
        gather = self.p.loss.gather_negatives and self.dist.enabled
        captured = {}

        def loss_fn(online, target):
            # The first call (view 1 -> view 2) also returns which negatives the deputy ranks picked, so
            # the diagnostic costs no second loss evaluation.
            kwargs = {"target_negatives": dist_utils.all_gather_cat(target),
                      "positive_offset": self.dist.rank * len(target)} if gather else {}
            if "stats" in captured:
                return self.loss_fn(online, target, **kwargs)
            value, captured["stats"] = self.loss_fn(online, target, return_stats=True, **kwargs)
            return value

        loss, parts, _ = self.ddp(view1, view2, loss_fn, local=local)
        labels = labels.to(view1.device)
        rates = false_negative_rates(captured["stats"], labels, dist_utils.all_gather_cat(labels) if gather else None)
        return loss, parts, {"fn_selected": rates["selected"].item(), "fn_hardest": rates["hardest"].item()}

    def fit(self, live=None) -> RunState:
        """Train the remaining epochs (call `resume()` first to continue a killed run)."""
        t = self.p.train
        if self.state.random_init is None and self.dist.is_main:
            self.state.random_init = self.monitor("random init")  # the baseline every report compares against
            if self.state.random_init:
                log.info("random init: %s", ", ".join(f"{k} {v:.4f}" for k, v in self.state.random_init.items()))
            self.save_checkpoint()
        for epoch in range(self.state.epoch, self.epochs):
            self.train_loader.set_epoch(epoch)
            sums = {"loss": 0.0, "n": 0}
            t0 = time.perf_counter()
            for micro, batch in enumerate(self._progress(epoch)):
                if micro >= self.budget.steps_in_epoch(epoch) * t.accumulate:
                    break
                self._step(batch, micro, sums)
            seconds = time.perf_counter() - t0
            self.state.epoch = epoch + 1
            before = self.state.history[-1].get("train_seconds", 0.0) if self.state.history else 0.0
            row = {"epoch": epoch + 1, "optimizer_steps": self.state.step,
                   "train_seconds": before + seconds, "loss": sums["loss"] / max(sums["n"], 1),
                   "lr": sums.get("lr", 0.0), "ema_momentum": sums.get("ema", 0.0),
                   "images_per_s": sums["n"] * t.batch_size * self.dist.world_size / seconds}
            for key in ("fn_selected", "fn_hardest"):
                if key in sums:
                    row[key] = sums[key] / sums["n"]
            if self.dist.is_main and ((epoch + 1) % t.monitor_every == 0 or epoch + 1 == self.epochs):
                row.update(self.monitor(f"epoch {epoch + 1}"))  # the final figures always come from the last epoch
            self.state.history.append(row)
            log.info("epoch %d/%d: %s", epoch + 1, self.epochs,
                     ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
            if live is not None and self.dist.is_main:
                log_to_live(live, row)
            if (epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == self.epochs:
                self.save_checkpoint()
            dist_utils.barrier()
        return self.state

    def _progress(self, epoch: int):
        """A bar on a terminal, a line every 30 s elsewhere (pipes, CI, Prefect) with step, rate and ETA."""
        return track(self.train_loader, f"epoch {epoch + 1}/{self.epochs}",
                     total=self.budget.steps_in_epoch(epoch) * self.p.train.accumulate, unit="batches",
                     enabled=self.dist.is_main)

    def export(self) -> dict:
        return self.model.export_backbone()


def log_to_live(live, row: dict) -> None:
    """One epoch's row as one DVCLive step (every key but `epoch` is a metric)."""
    for key, value in row.items():
        if key != "epoch":
            live.log_metric(key, value)
    live.next_step()


def summarise(state: RunState) -> dict:
    """The stage's metrics: final and best kNN next to the random-init baseline, final diagnostics."""
    last = state.history[-1] if state.history else {}
    base = state.random_init or {}
    out = {"epochs": state.epoch, "steps": state.step, "final_loss": last.get("loss")}
    for key in ("knn_top1", "linear_top1"):
        out[key] = last.get(key)
        out[f"random_init_{key}"] = base.get(key)
        out[f"best_{key}"] = max((h[key] for h in state.history if key in h), default=None)
        if out[key] is not None and base.get(key) is not None:
            out[f"{key.split('_')[0]}_gain_points"] = 100 * (out[key] - base[key])
    for key in ("fn_selected", "fn_hardest", "images_per_s", "train_seconds"):
        if key in last:
            out[key] = last[key]
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
