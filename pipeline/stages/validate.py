"""Stage `validate`: build a manifest per dataset and check it with a Great Expectations suite.

Outputs (all under data/validated/, written to a temporary folder and renamed when complete):
  manifests/<table>.csv   what later stages read (quarantined rows left out)
  quarantine.csv          files left out with the expectation they failed (quarantine mode only)
  data_docs/index.html    Great Expectations Data Docs
  summary.json            per-table counts and the overall result (a DVC metric)
On failure (the default `validate.on_error: fail`) every offending file is printed with the expectation
it failed, the report goes to data/validate_failures/ and the stage exits 1, so nothing downstream runs.
Input files are only read, never modified or deleted.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from ..data import manifest
from ..data.generate_common import AtomicDir
from ..validation import Rules, run_checks
from ._common import StageFailed, log, run_stage

OUT = Path("data/validated")
FAILURES = Path("data/validate_failures")
PER_FILE_TABLES = ("classification", "sysu", "coco_images", "coco_annotations")


def build_tables(params) -> dict[str, pd.DataFrame]:
    d, tables = params.data, {}
    if "classification" in params.validate_.datasets:
        splits = (d.classification.train_split, d.classification.val_split)
        tables.update(manifest.classification_tables(Path(d.classification.root), splits))
    if "sysu" in params.validate_.datasets:
        tables.update(manifest.sysu_tables(Path(d.sysu.root)))
    if "coco" in params.validate_.datasets:
        tables.update(manifest.coco_tables_for(Path(d.coco.root), (d.coco.train_split, d.coco.val_split)))
    return tables


def quarantine(tables: dict[str, pd.DataFrame], bad_rows: dict[str, set]) -> tuple[dict, pd.DataFrame]:
    """Leave offending per-file rows out (and annotations of quarantined COCO images); recount classes."""
    kept, removed = dict(tables), []
    for name in PER_FILE_TABLES:
        if name in kept and bad_rows.get(name):
            df = kept[name]
            mask = df.index.isin(list(bad_rows[name]))
            removed.append(df[mask].assign(table=name)[["table", "path"]])
            kept[name] = df[~mask].reset_index(drop=True)
    if "coco_images" in kept and "coco_annotations" in kept and len(kept["coco_annotations"]):
        ok_ids = set(zip(kept["coco_images"]["split"], kept["coco_images"]["image_id"]))
        anns = kept["coco_annotations"]
        keep = [(s, i) in ok_ids for s, i in zip(anns["split"], anns["image_id"])]
        kept["coco_annotations"] = anns[keep].reset_index(drop=True)
    if "classification_counts" in kept:
        counts = kept["classification_counts"].copy()
        present = kept["classification"].groupby(["split", "class_name"]).size()
        counts["count"] = [int(present.get((s, c), 0)) for s, c in zip(counts["split"], counts["class_name"])]
        kept["classification_counts"] = counts
    gone = pd.concat(removed, ignore_index=True) if removed else pd.DataFrame(columns=["table", "path"])
    return kept, gone


def main() -> None:
    def body(params):
        v, c = params.validate_, params.data.classification
        split_names = {"train": c.train_split, "val": c.val_split}  # the schema's roles -> folder names
        rules = Rules(min_side=v.min_side, max_side=v.max_side, allowed_modes=tuple(v.allowed_modes),
                      min_images_per_class={split_names[k]: n for k, n in v.min_images_per_class.items()})
        # Our own outputs from an earlier run go first: a failing run must not leave them looking current.
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.rmtree(FAILURES, ignore_errors=True)
        tables = build_tables(params)
        with AtomicDir(OUT) as tmp:
            report = run_checks(tables, rules, docs_dir=tmp / "data_docs")
            quarantined = pd.DataFrame(columns=["table", "path", "expectation"])
            if not report.success and v.on_error == "quarantine":
                log.warning("quarantining %d row(s):\n%s", sum(map(len, report.bad_rows.values())),
                            report.format_failures())
                failures = pd.DataFrame([f.__dict__ for f in report.failures])
                tables, gone = quarantine(tables, report.bad_rows)
                quarantined = gone.merge(failures[["table", "path", "expectation"]], on=["table", "path"])
                report = run_checks(tables, rules, docs_dir=tmp / "data_docs")
            if not report.success:
                _keep_failure_report(tmp, report)
                raise StageFailed(
                    f"{len(report.failures)} expectation failure(s); every offending row:\n"
                    f"{report.format_failures()}\nreport and Data Docs: {FAILURES}/ "
                    "(set validate.on_error=quarantine to leave bad files out instead)")
            (tmp / "manifests").mkdir()
            for name, df in tables.items():
                df.to_csv(tmp / "manifests" / f"{name}.csv", index=False)
            quarantined.to_csv(tmp / "quarantine.csv", index=False)  # header only unless quarantining
            summary = report.summary() | {"quarantined": int(len(quarantined))}
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        log.info("all expectations met: %s", {k: len(t) for k, t in tables.items()})
        log.info("Data Docs: %s", OUT / "data_docs" / "index.html")

    run_stage("validate", body)


def _keep_failure_report(tmp: Path, report) -> None:
    """Move what was written aside: the failing run must not leave data/validated looking complete."""
    FAILURES.mkdir(parents=True, exist_ok=True)
    (FAILURES / "failures.txt").write_text(report.format_failures() + "\n")
    (FAILURES / "summary.json").write_text(json.dumps(report.summary(), indent=2, sort_keys=True) + "\n")
    if (tmp / "data_docs").exists():
        shutil.copytree(tmp / "data_docs", FAILURES / "data_docs", dirs_exist_ok=True)


if __name__ == "__main__":
    main()
