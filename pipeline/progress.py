"""One rule for progress output: a tqdm bar on an interactive terminal; elsewhere (pipes, CI, Prefect's logs) a
plain log line with the count, rate and ETA after the first item that ends `PIPELINE_PROGRESS_EVERY` seconds
(30 by default) after the last line, so long work is not silent for minutes (an item that itself takes longer,
e.g. a stalled loader, is not interrupted)."""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
ENV_EVERY = "PIPELINE_PROGRESS_EVERY"
DEFAULT_EVERY_S = 30.0
log = logging.getLogger("pipeline")


def show_progress() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def every_s() -> float:
    """Seconds between progress lines off a terminal (PIPELINE_PROGRESS_EVERY; 0 prints one per item)."""
    raw = os.environ.get(ENV_EVERY, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_EVERY_S
    except ValueError:
        raise ValueError(f"{ENV_EVERY}={raw!r}: expected a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"{ENV_EVERY}={raw!r}: expected a finite number of seconds >= 0")
    return value


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(desc: str, done: int, total: int | None, elapsed: float, unit: str) -> str:
    """'desc: 120/390 steps (31%), 2.10 steps/s, ETA 2m09s' (no total: count and rate only)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    head = f"{desc}: {done}/{total} {unit} ({100 * done / total:.0f}%)" if total else f"{desc}: {done} {unit}"
    eta = f", ETA {_duration((total - done) / rate)}" if total and rate > 0 else ""
    return f"{head}, {rate:.2f} {unit}/s{eta}"


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
          logger: logging.Logger | None = None, enabled: bool = True) -> Iterator[T]:
    """Yield `items`, reporting progress: a tqdm bar on a terminal, otherwise a log line whenever
    `every_s()` seconds have passed since the last one. `enabled=False` (other ranks) yields silently."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled:
        yield from items
        return
    if show_progress():
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False)
        return
    out, interval = logger or log, every_s()
    start = last = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= interval:
            out.info(progress_line(desc, done, total, now - start, unit))
            last = now
