"""What the `generate` stage records about the datasets it wrote, and the way back to them.

Each generated folder holds a stamp (`.generated.json`): the parameters, seed and generator code that produced
it, and every file's md5. `generate` keeps a folder whose stamp matches as it is, even where files changed
since (the folder plays the user's raw data, docs/data-safety.md); `damaged()` names what changed and
`set_aside()` moves a damaged folder out of the way, so that the next `dvc repro` regenerates it pristine
(`make restore-data`). Nothing is deleted: the damaged copy is kept under data/damaged/.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

STAMP = ".generated.json"
DAMAGED = Path("data/damaged")


def file_digests(root: Path) -> dict[str, str]:
    """{posix path relative to root: md5} of every file under root except the stamp."""
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != STAMP}


def differences(recorded: dict[str, str], now: dict[str, str]) -> dict[str, list[str]]:
    """Files modified, added or deleted since generation (empty lists left out)."""
    found = {"modified": sorted(f for f in recorded.keys() & now.keys() if recorded[f] != now[f]),
             "added": sorted(now.keys() - recorded.keys()), "deleted": sorted(recorded.keys() - now.keys())}
    return {kind: files for kind, files in found.items() if files}


def damaged(root: Path) -> dict[str, list[str]] | None:
    """What changed in a generated folder since `generate` wrote it ({} when pristine); None when `root` is not a
    generated folder with a file list (missing, or no stamp)."""
    stamp = Path(root) / STAMP
    if not stamp.is_file():
        return None
    recorded = json.loads(stamp.read_text()).get("files")
    return None if recorded is None else differences(recorded, file_digests(Path(root)))


def set_aside(root: Path, damaged_dir: Path = DAMAGED) -> Path:
    """Move `root` to damaged_dir/<name>-<UTC time> (never deleted); returns where it went."""
    damaged_dir.mkdir(parents=True, exist_ok=True)
    target = damaged_dir / f"{Path(root).name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{target.name.split('+')[0]}+{n}")
    Path(root).rename(target)
    return target
