"""The JSON sidecar next to each .beton, and the checks a loader runs before opening one.

`<name>.beton.json` records what the file was written from (manifest path and sha256, the selected
split, the data root) and with what (the convert parameters that change its bytes), plus its size and
sample count. `check_beton` turns every way a .beton can be wrong into a `BetonError` naming the file:
missing, without a sidecar, truncated (size or internal layout off), or stale (its manifest changed
after it was written, or params.yaml asks for different convert parameters).

Staleness is decided by the manifest's content hash, not by modification times: `dvc checkout` and
copies reset mtimes, so "older than its manifest" is reported only when the content differs too.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..io_safety import write_text_atomic

FORMAT = 1
HINT = "run `dvc repro convert` (or `python -m pipeline.stages.convert`) to rewrite it"


class BetonError(ValueError):
    """A .beton file is missing, truncated or stale; the message names the file and what to do."""


def sidecar_path(beton: Path) -> Path:
    return Path(beton).with_name(Path(beton).name + ".json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_sidecar(beton: Path, *, manifest: Path, selection: dict, root: str, settings: dict,
                  fields: list[str], num_samples: int) -> dict:
    """Record how `beton` was made; no timestamps, so the same conversion gives the same sidecar bytes."""
    beton = Path(beton)
    info = {"format": FORMAT, "beton": beton.name, "bytes": beton.stat().st_size, "num_samples": num_samples,
            "fields": list(fields), "manifest": Path(manifest).as_posix(), "manifest_sha256": file_sha256(manifest),
            "selection": selection, "root": root, "convert": settings}
    write_text_atomic(sidecar_path(beton), json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def read_layout(beton: Path) -> tuple[int, int, int]:
    """(num_samples, page_size, allocation table offset) from the header; BetonError if unreadable."""
    from ffcv.types import CURRENT_VERSION, HeaderType

    size = beton.stat().st_size
    if size < HeaderType.itemsize:
        raise BetonError(f"{beton}: truncated ({size} bytes, shorter than the .beton header); {HINT}")
    header = np.fromfile(beton, dtype=HeaderType, count=1)[0]
    if int(header["version"]) != CURRENT_VERSION:
        raise BetonError(f"{beton}: not a .beton of format version {CURRENT_VERSION} "
                         f"(header says {int(header['version'])}); {HINT}")
    return int(header["num_samples"]), int(header["page_size"]), int(header["alloc_table_ptr"])


def check_beton(beton: Path, manifest: Path | None = None, settings: dict | None = None) -> dict:
    """Raise BetonError unless `beton` is complete and (if given) current for `manifest` and `settings`.

    Returns the sidecar. `settings` is the dict of convert parameters that change the bytes
    (EncodeSettings.as_dict()).
    """
    from ffcv.types import ALLOC_TABLE_TYPE

    beton = Path(beton)
    if not beton.is_file():
        raise BetonError(f"{beton}: .beton file not found; {HINT}")
    side = sidecar_path(beton)
    if not side.is_file():
        raise BetonError(f"{beton}: its sidecar {side.name} is missing, so the file was not written (completely)"
                         f" by the convert stage; {HINT}")
    try:
        info = json.loads(side.read_text())
        expected_bytes, expected_n = int(info["bytes"]), int(info["num_samples"])
    except (ValueError, KeyError, TypeError) as e:
        raise BetonError(f"{beton}: sidecar {side.name} is unreadable ({e}); {HINT}") from None
    size = beton.stat().st_size
    if size != expected_bytes:
        raise BetonError(f"{beton}: truncated or altered: {size} bytes, the convert stage wrote {expected_bytes};"
                         f" {HINT}")
    n, _, table = read_layout(beton)
    if n != expected_n or table + n * ALLOC_TABLE_TYPE.itemsize != size:
        raise BetonError(f"{beton}: inconsistent layout (header: {n} samples, allocation table at byte {table} of "
                         f"{size}); the file is damaged; {HINT}")
    if manifest is not None:
        manifest = Path(manifest)
        if not manifest.is_file():
            raise BetonError(f"{beton}: its manifest {manifest} does not exist; run `dvc repro validate` first")
        if file_sha256(manifest) != info.get("manifest_sha256"):
            newer = manifest.stat().st_mtime > beton.stat().st_mtime
            raise BetonError(f"{beton}: stale: written from a different version of {manifest}"
                             f"{' (the manifest is newer than the .beton)' if newer else ''}; {HINT}")
    if settings is not None:
        written = info.get("convert", {})
        diff = [f"convert.{k} = {settings[k]!r} in params.yaml, {written.get(k)!r} in the file"
                for k in sorted(settings) if written.get(k) != settings[k]]
        if diff:
            raise BetonError(f"{beton}: stale: written with different convert parameters ({'; '.join(diff)});"
                             f" {HINT}")
    return info
