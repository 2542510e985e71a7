"""Small matplotlib pictures the stages write next to their metrics (atomically: never a half-written PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io_safety import atomic_write


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    """Write to `<path>.tmp`, then rename, so a killed stage never leaves a truncated picture.

    Any failure removes the temporary; a full disk raises DiskFullError naming `path`.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or None)
    finally:
        plt.close(fig)


def line_plot(path: Path, series: dict[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str,
              ylabel: str, title: str) -> None:
    """One line per named (x, y) series."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, (x, y) in series.items():
        ax.plot(list(x), list(y), marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def notice_picture(path: Path, title: str, text: str) -> None:
    """A picture that says in words why there is nothing to show (a skipped evaluation's plot output)."""
    import matplotlib
    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6, 2))
    fig.text(0.5, 0.65, title, ha="center", va="center", fontsize=13, weight="bold")
    fig.text(0.5, 0.35, "\n".join(textwrap.wrap(text, 70)), ha="center", va="center", fontsize=9)
    save_figure(fig, path)


def training_curves(path: Path, history: list[dict], random_init: dict | None, title: str) -> None:
    """The pretraining run at a glance (readable offline, unlike the Vega charts): kNN and linear-probe top-1
    per epoch from the random-init backbone (epoch 0), the loss, and the false-negative rates."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = random_init or {}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("knn_top1", "kNN"), ("linear_top1", "linear probe")):
        points = ([(0, base[key])] if key in base else []) + [(h["epoch"], h[key]) for h in history if key in h]
        if points:
            axes[0].plot(*zip(*points), marker="o", ms=3, label=label)
    axes[0].set(xlabel="epoch (0 = random init)", ylabel="val top-1", title="monitor")
    axes[1].plot([h["epoch"] for h in history], [h["loss"] for h in history], marker="o", ms=3)
    axes[1].set(xlabel="epoch", ylabel="mean training loss", title="loss")
    for key in ("fn_selected", "fn_hardest"):
        points = [(h["epoch"], h[key]) for h in history if key in h]
        if points:
            axes[2].plot(*zip(*points), marker="o", ms=3, label=key)
    axes[2].set(xlabel="epoch", ylabel="same-class share of negatives", title="false negatives")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
