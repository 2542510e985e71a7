"""Stage `validate`: build a manifest per dataset and check it with a Great Expectations suite.

Outputs (all under data/validated/, written to a temporary folder and renamed when complete):
  manifests/<table>.csv   what later stages read (quarantined rows left out)
  quarantine.csv          files left out with the expectation they failed (quarantine mode only)
  summary.json            the overall result, files quarantined, datasets skipped (a DVC metric)
  details.json            the same with per-table counts
and data/reports/validate/{data_docs/index.html,failures.txt}: Great Expectations Data Docs and the list
of offending rows, written on success and on failure (a DVC output: restored with the result they show).
On failure (the default `validate.on_error: fail`) every offending file is printed with the expectation
it failed and the stage exits 1, so nothing downstream runs.
Input files are only read, never modified or deleted.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd

from ..data import manifest
from ..data.generate_common import AtomicDir
from ..validation import Rules, run_checks
from ..webassets import offline_data_docs
from ._common import StageFailed, log, run_stage, write_results

OUT = Path("data/validated")
REPORT = Path("data/reports/validate")  # Data Docs and the failure list, also written when validation fails
PER_FILE_TABLES = ("classification", "sysu", "coco_images", "coco_annotations")
# summary.json (the DVC metric): the result, files quarantined, datasets skipped, the manifests' sha256;
# details.json adds every table's rows, expectations evaluated and failed.
HEADLINE = ("success", "quarantined", "skipped.*", "manifest_sha.*")
DATASET_TABLES = ("classification", "sysu", "coco_images", "coco_annotations")


def checked_datasets(params) -> tuple[list[str], dict[str, str]]:
    """(the datasets validated, {dataset: why it is not}): validate.datasets less those the data group lacks."""
    d, off = params.data, {}
    for name in params.validate_.datasets:
        reason = d.skipped_reason(name) if name in ("sysu", "coco") else None
        if reason:
            off[name] = reason
    for name in {"classification", "sysu", "coco"} - set(params.validate_.datasets):
        off[name] = f"not in validate.datasets {list(params.validate_.datasets)}"
    return [n for n in params.validate_.datasets if n not in off], dict(sorted(off.items()))


def build_tables(params) -> dict[str, pd.DataFrame]:
    """The manifests; an entry resolving outside its dataset root stops here, before anything opens it."""
    d, tables = params.data, {}
    datasets, _ = checked_datasets(params)
    # Symlinks resolving inside a dataset root are followed; outside it, only with this option.
    links = {"follow_external_symlinks": params.validate_.follow_external_symlinks}
    if "classification" in datasets:
        splits = (d.classification.train_split, d.classification.val_split)
        tables.update(manifest.classification_tables(Path(d.classification.root), splits, **links))
    if "sysu" in datasets:
        tables.update(manifest.sysu_tables(Path(d.sysu.root), **links))
    if "coco" in datasets:
        tables.update(manifest.coco_tables_for(Path(d.coco.root), (d.coco.train_split, d.coco.val_split), **links))
    return tables


def rules_for(params) -> Rules:
    v, c = params.validate_, params.data.classification
    split_names = {"train": c.train_split, "val": c.val_split}  # the schema's roles -> folder names
    return Rules(min_side=v.min_side, max_side=v.max_side, allowed_modes=tuple(v.allowed_modes),
                 min_images_per_class={split_names[k]: n for k, n in v.min_images_per_class.items()})


def quarantine(tables: dict[str, pd.DataFrame], rules: Rules, report, docs_dir: Path | None, rounds: int = 3):
    """Leave offending per-file rows out and re-check, until clean or nothing more can be left out.

    Leaving a file out can orphan another row (a query whose only gallery match went, an annotation of a
    quarantined image): those fail the next round and are left out too. Table-level failures (a class
    with too few images) cannot be quarantined and keep the report failing.
    """
    removed = []
    for _ in range(rounds):
        bad = {t: rows for t, rows in report.bad_rows.items() if t in PER_FILE_TABLES and rows}
        if report.success or not bad:
            break
        why = {(f.table, f.row): f.expectation for f in report.failures}
        for name, rows in bad.items():
            df = tables[name]
            mask = df.index.isin(list(rows))
            removed += [{"table": name, "path": p, "expectation": why.get((name, i), "")}
                        for i, p in zip(df.index[mask], df["path"][mask])]
            tables[name] = df[~mask].reset_index(drop=True)
        tables = manifest.refresh_derived(tables)
        report = run_checks(tables, rules, docs_dir=docs_dir)
    return tables, report, pd.DataFrame(removed, columns=["table", "path", "expectation"])


def main() -> None:
    def body(params):
        v = params.validate_
        rules = rules_for(params)
        # Our own outputs from an earlier run go first: a failing run must not leave them looking current.
        shutil.rmtree(OUT, ignore_errors=True)
        tables = build_tables(params)
        # Data Docs are an output of their own (dvc.yaml), so DVC restores them with the result they show; they
        # embed run times, but nothing downstream depends on them, so a re-run changes no later stage.
        shutil.rmtree(REPORT, ignore_errors=True)
        REPORT.mkdir(parents=True)
        with AtomicDir(OUT) as tmp:
            docs = REPORT / "data_docs"
            report = run_checks(tables, rules, docs_dir=docs)
            quarantined = pd.DataFrame(columns=["table", "path", "expectation"])
            if not report.success and v.on_error == "quarantine":
                log.warning("quarantine mode, offending rows:\n%s", report.format_failures())
                tables, report, quarantined = quarantine(tables, rules, report, docs)
                log.warning("left %d file(s) out (data/validated/quarantine.csv); nothing was deleted",
                            len(quarantined))
            (REPORT / "failures.txt").write_text(report.format_failures() + "\n")
            offline_data_docs(docs)  # local copies of the CDN styles and scripts: the pages render offline
            if not report.success:
                raise StageFailed(
                    f"{len(report.failures)} expectation failure(s); every offending row:\n"
                    f"{report.format_failures()}\nlist and Data Docs: {REPORT}/ "
                    "(set validate.on_error=quarantine to leave bad files out instead)")
            (tmp / "manifests").mkdir()
            for name, df in tables.items():
                df.to_csv(tmp / "manifests" / f"{name}.csv", index=False)
            # Which data the run validated, visible in `dvc exp show` (DVC lists no hash for a folder outside
            # the repository): the manifests' sha256, i.e. every file's path, label, size and dimensions.
            fingerprint = {name: hashlib.sha256((tmp / "manifests" / f"{name}.csv").read_bytes()).hexdigest()[:12]
                           for name in tables if name in DATASET_TABLES}
            quarantined.to_csv(tmp / "quarantine.csv", index=False)  # header only unless quarantining
            summary = report.summary() | {"quarantined": int(len(quarantined)),
                                           "skipped": checked_datasets(params)[1], "manifest_sha": fingerprint}
            write_results(tmp, summary, HEADLINE, "summary.json")
        log.info("all expectations met: %s", {k: len(t) for k, t in tables.items()})
        for name, reason in checked_datasets(params)[1].items():
            log.info("%s: not validated (%s)", name, reason)
        log.info("Data Docs: %s", REPORT / "data_docs" / "index.html")

    run_stage("validate", body)


if __name__ == "__main__":
    main()
