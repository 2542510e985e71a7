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
