"""Small matplotlib pictures the stages write next to their metrics (atomically: never a half-written PNG)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    """Write to a temporary name, then rename, so a killed stage never leaves a truncated picture."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)


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
