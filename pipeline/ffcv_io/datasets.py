"""Which .beton files the `convert` stage writes, and from which manifest rows.

    classification_train / classification_val   image, label                      (classification.csv)
    sysu_train / sysu_query / sysu_gallery       image, label, camera, is_distractor (sysu.csv)

SYSU labels are the integer identity (the bag id for training bags, -1000 for distractors); cameras are
-1 for the training bags. Rows keep the manifest's order, which is sorted by the validate stage.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .encode import EncodeSettings
from .sidecar import write_sidecar
from .writer import WriteStats, write_beton

log = logging.getLogger("pipeline")

MANIFESTS = Path("data/validated/manifests")
BETON_DIR = Path("data/beton")


@dataclass(frozen=True)
class BetonPlan:
    name: str          # file stem in the output folder
    manifest: str      # file name in the manifests folder
    root: str          # dataset root the manifest's paths are relative to
    split: str         # value of the manifest's `split` column
    ints: tuple[str, ...]

    @property
    def file_name(self) -> str:
        return f"{self.name}.beton"


def plans(params) -> list[BetonPlan]:
    c, s = params.data.classification, params.data.sysu
    sysu_ints = ("label", "camera", "is_distractor")
    return [BetonPlan("classification_train", "classification.csv", c.root, c.train_split, ("label",)),
            BetonPlan("classification_val", "classification.csv", c.root, c.val_split, ("label",)),
            BetonPlan("sysu_train", "sysu.csv", s.root, "train", sysu_ints),
            BetonPlan("sysu_query", "sysu.csv", s.root, "query", sysu_ints),
            BetonPlan("sysu_gallery", "sysu.csv", s.root, "gallery", sysu_ints)]


def plan_for(params, name: str) -> BetonPlan:
    for plan in plans(params):
        if plan.name == name:
            return plan
    raise ValueError(f"unknown .beton {name!r}: expected one of {[p.name for p in plans(params)]}")


def read_manifest(path: Path) -> pd.DataFrame:
    # Identities like "0000000001" and class names must stay strings; no "NA" -> NaN guessing.
    return pd.read_csv(path, dtype={"path": str, "split": str, "identity": str, "class_name": str},
                       keep_default_na=False)


def selected_rows(plan: BetonPlan, manifest: pd.DataFrame, manifest_path: Path) -> pd.DataFrame:
    missing = [c for c in ("path", "split", *plan.ints) if c not in manifest.columns]
    if missing:
        raise ValueError(f"{manifest_path}: missing column(s) {missing} needed for {plan.file_name}")
    return manifest[manifest["split"] == plan.split].reset_index(drop=True)


def _as_int(column: pd.Series, name: str, manifest_path: Path) -> list[int]:
    if column.dtype == bool or name == "is_distractor":
        return [int(str(v).strip().lower() in ("true", "1")) for v in column]
    try:
        return [int(v) for v in column]
    except ValueError as e:
        raise ValueError(f"{manifest_path}: column {name!r} is not integer ({e})") from None


def convert_plan(plan: BetonPlan, manifest_path: Path, out_dir: Path, settings: EncodeSettings,
                 num_workers: int, manifest: pd.DataFrame | None = None) -> WriteStats | None:
    """Write `<out_dir>/<plan.name>.beton` and its sidecar; None (and a log line) if the split is empty."""
    manifest = read_manifest(manifest_path) if manifest is None else manifest
    rows = selected_rows(plan, manifest, manifest_path)
    if rows.empty:
        log.warning("%s: no rows with split %r, %s not written", manifest_path, plan.split, plan.file_name)
        return None
    root = Path(plan.root)
    images = [(str(root / rel), rel) for rel in rows["path"]]
    ints = {name: _as_int(rows[name], name, manifest_path) for name in plan.ints}
    stats = write_beton(Path(out_dir) / plan.file_name, images, ints, settings, num_workers)
    write_sidecar(stats.path, manifest=manifest_path, selection={"split": plan.split}, root=plan.root,
                  settings=settings.as_dict(), fields=["image", *plan.ints], num_samples=stats.samples)
    return stats


def convert_all(params, out_dir: Path, manifest_dir: Path = MANIFESTS, names: list[str] | None = None,
                num_workers: int | None = None) -> list[WriteStats]:
    """Convert every plan whose manifest exists (a dataset left out of `validate.datasets` is skipped)."""
    settings = EncodeSettings.from_params(params.convert)
    workers = params.convert.num_workers if num_workers is None else num_workers
    written, cache = [], {}
    for plan in plans(params):
        if names is not None and plan.name not in names:
            continue
        path = Path(manifest_dir) / plan.manifest
        if not path.is_file():
            log.info("%s: not found, %s skipped", path, plan.file_name)
            continue
        if path not in cache:
            cache[path] = read_manifest(path)
        stats = convert_plan(plan, path, out_dir, settings, workers, cache[path])
        if stats is not None:
            log.info("%s: %d images, %.1f MB in %.1f s (%.0f images/s)", stats.path.name, stats.samples,
                     stats.bytes / 1e6, stats.seconds, stats.images_per_s)
            written.append(stats)
    return written
