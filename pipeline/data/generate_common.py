"""Shared machinery of the embedded-dataset generators: per-item seeding, parallel writing, atomic output."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..io_safety import AtomicDir  # noqa: F401 - the generators' (and stages') atomic output folder
from ..progress import show_progress


def item_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator that depends only on (seed, keys): items are reproducible in any order or process."""
    return np.random.default_rng([seed, *keys])


def save_jpeg(img: Image.Image, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Fixed encoder settings (no optimize/progressive): the same pixels give the same bytes.
    img.save(path, format="JPEG", quality=quality, subsampling=2, optimize=False)


def run_jobs(fn: Callable, jobs: Sequence, desc: str, workers: int | None = None) -> list:
    """Run fn over jobs in worker processes, keeping job order in the results; a progress bar on a TTY."""
    workers = workers or min(os.cpu_count() or 1, 4)
    chunks = max(1, len(jobs) // (workers * 8))
    disable = not show_progress()
    if workers <= 1 or len(jobs) < 64:
        return [fn(j) for j in tqdm(jobs, desc=desc, disable=disable)]
    with ProcessPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(fn, jobs, chunksize=chunks), total=len(jobs), desc=desc, disable=disable))


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
