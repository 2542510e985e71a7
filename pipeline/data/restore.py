"""`python -m pipeline.data restore`: the way back to pristine generated data (`make restore-data`).

Re-running `generate` over a damaged folder keeps it as it is (it plays the user's raw data), so `dvc repro`
alone would record the damage in dvc.lock. `restore` sets every damaged generated folder aside under
data/damaged/ (nothing is deleted); the next `dvc repro` regenerates it byte for byte as it was, and validate,
its Data Docs and everything downstream follow.
"""
from __future__ import annotations

from pathlib import Path

from .stamps import DAMAGED, damaged, set_aside

SETS = ("imagenet", "sysu30k", "coco")


def restore(out_dir: Path, every: bool = False, damaged_dir: Path = DAMAGED, echo=print) -> list[Path]:
    """Set aside the generated folders under `out_dir` that changed since generation (`every`: all of them, also
    those without a file list); returns where they went."""
    moved = []
    for name in SETS:
        root = Path(out_dir) / name
        if not root.is_dir():
            continue
        changes = damaged(root)
        if changes == {} and not every:
            echo(f"{root}: as generated")
            continue
        if changes is None and not every:
            echo(f"{root}: no record of what generate wrote (no stamp with a file list); --all sets it aside too")
            continue
        what = "; ".join(f"{kind} {len(files)}: {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}"
                         for kind, files in (changes or {}).items()) or "set aside (--all)"
        target = set_aside(root, damaged_dir)
        moved.append(target)
        echo(f"{root}: {what} -> moved to {target}")
    if moved:
        echo("next: dvc repro   (regenerates them as they were; validate and everything downstream follow)")
    return moved
