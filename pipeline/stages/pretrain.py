"""Stage `pretrain`: self-supervised pretraining with the configured loss (truncated triplet by default).

Works alone or under `torchrun --nproc_per_node=N python -m pipeline.stages.pretrain` (DDP). Outputs in
data/pretrain/: backbone.pt (a plain torchvision state_dict), metrics.json, and DVCLive's per-epoch metrics
and plots under live/. checkpoint.pt there is the resume state, a working file that DVC does not track: it
is resumed only when its fingerprint (params, data, code: pipeline/train/fingerprint.py) matches.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..evaluation.monitor import classification_monitor
from ..evaluation.plots import training_curves
from ..loaders.from_params import ssl_loader
from ..train import distributed as dist_utils
from ..train.checkpoint import atomic_save
from ..train.loop import Pretrainer, TrainingDiverged, log_to_live, pick_device, summarise
from ._common import StageFailed, log, run_stage, write_metrics

OUT = Path("data/pretrain")
LIVE = OUT / "live"  # DVCLive's published files: metrics.json (tracked by git) and plots/metrics/ (a DVC plot)
LIVE_WORK = OUT / "live.partial"  # where DVCLive writes during the run (git-ignored), published at the end


def main() -> None:
    def body(params):
        device = pick_device(params.train.device)
        dist = dist_utils.init_from_env(device.type)
        try:
            # On the CPU the model is the cost: torch gets every core (the loaders' default leaves the
            # decoder threads theirs, which halves a 2-core machine's training speed).
            threads = {"torch_threads": os.cpu_count()} if device.type == "cpu" else {}
            monitor = classification_monitor(params, device, **threads)
            trainer = Pretrainer(params, OUT, ssl_loader(params, device=device, distributed=dist.enabled, **threads),
                                 dist, device, monitor=monitor)
            trainer.resume()
            log.info("budget: %s", trainer.budget.describe())
            if trainer.budget.warning:
                log.warning("budget: %s", trainer.budget.warning)
            live = _live(trainer.state.history) if dist.is_main else None
            try:
                state = trainer.fit(live)
            except TrainingDiverged as e:
                raise StageFailed(str(e)) from None
            finally:
                if live is not None:
                    live.end()
            if dist.is_main:
                atomic_save(trainer.export(), OUT / "backbone.pt")
                metrics = summarise(state) | trainer.ranks() | {"knn_k": monitor.bank_k()}  # k capped per class
                notes = monitor.notes()
                for note in notes:
                    log.warning("monitor: %s", note)
                if notes:
                    metrics["monitor_notes"] = "; ".join(notes)
                write_metrics(OUT / "metrics.json", metrics)
                training_curves(OUT / "curves.png", state.history, state.random_init,
                                f"pretraining: {params.method} ({params.loss.name}), {params.model.arch}, "
                                f"data {params.data.name}, {metrics['steps']} steps")
                log.info("kNN top-1 %.4f vs random init %.4f, linear probe %.4f vs %.4f; backbone: %s",
                         metrics["knn_top1"], metrics["random_init_knn_top1"], metrics["linear_top1"],
                         metrics["random_init_linear_top1"], OUT / "backbone.pt")
                _publish_live()
        finally:
            dist_utils.shutdown()

    run_stage("pretrain", body)


def _live(history: list[dict]):
    """A fresh DVCLive run in the work folder, with the epochs already done replayed from the checkpoint's history.

    The curves are a function of the history alone: DVC deletes the plots folder before it re-runs the
    stage, and a resumed run (even one killed after its last epoch) must still produce complete curves.
    The published folder goes first: a run killed from here on leaves no summary (live/metrics.json) holding
    the previous run's values or its own partial ones; `_publish_live` puts the complete folder in place.
    """
    import shutil

    from dvclive import Live

    shutil.rmtree(LIVE, ignore_errors=True)
    shutil.rmtree(LIVE_WORK, ignore_errors=True)
    # dvc.yaml declares the metrics and plots.
    live = Live(str(LIVE_WORK), dvcyaml=False, save_dvc_exp=False, report=None)
    for row in history:
        log_to_live(live, row)
    return live


def _publish_live() -> None:
    """The finished run's DVCLive folder into place: one rename of the complete folder."""
    import shutil

    shutil.rmtree(LIVE, ignore_errors=True)
    os.replace(LIVE_WORK, LIVE)


if __name__ == "__main__":
    main()
