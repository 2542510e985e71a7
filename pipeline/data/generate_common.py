"""Shared machinery of the embedded-dataset generators: per-item seeding, parallel writing, atomic output."""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

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


class AtomicDir:
    """Write into `<dest>.partial`, move to `dest` only when the block finishes without error.

    A crashed or killed generation never leaves a directory that looks complete.
    """

    def __init__(self, dest: Path):
        self.dest = Path(dest)
        self.tmp = self.dest.with_name(self.dest.name + ".partial")

    def __enter__(self) -> Path:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.dest.exists():
            shutil.rmtree(self.dest)
        self.tmp.rename(self.dest)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
