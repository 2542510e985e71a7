"""Great Expectations checks for dataset manifests.

The manifests (one pandas DataFrame per table, built elsewhere) are validated with one GX
ExpectationSuite per table. Every offending row is reported with the expectation it failed, so
that the caller can print a readable list and quarantine the rows (``Report.bad_rows``).
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np
import pandas as pd

# Opt out of GX usage analytics before GX is imported (it reads the variable at import time).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations.row_conditions import Column  # noqa: E402

from pipeline.validation import docs  # noqa: E402

IMAGE_TABLES = ("classification", "sysu", "coco_images")

# Positional row number added to a copy of each frame and requested back from GX through
# `unexpected_index_column_names`: GX then returns {"_row": i, "path": ..., <column>: value}
# per offending row. `path` alone is not enough to find the index label (duplicate paths are
# one of the failures we look for), and asking GX for the bare index would hide `path` from the
# Data Docs.
ROW = "_row"
CHECK_KEY = "check"  # expectation meta key holding the Check's position in its table's list

# GX 1.24.1 (pandas) honours `row_condition` given as a Condition object (string conditions are
# deprecated since 1.9). Restricting the image-geometry checks to decoding rows means a file that
# does not decode is reported once, under `decodes`, not again for its -1 width/height and '' mode.
DECODES = Column("decodes") == True  # noqa: E712 - builds a GX condition, not a comparison


@dataclass(frozen=True)
class Rules:
    """Thresholds for the manifest checks.

    `min_images_per_class` maps a split to the minimum number of images every class of the class
    set must have in it; splits not listed are not checked.
    """

    min_side: int
    max_side: int
    allowed_modes: tuple[str, ...] = ("RGB", "L", "CMYK")
    min_images_per_class: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One expectation on one table; `detail` names a column shown next to the bad value."""

    table: str
    column: str | None
    expectation: type[gxe.Expectation]
    kwargs: dict[str, Any]
    description: str
    detail: str | None = None


def build_checks(rules: Rules) -> list[Check]:
    """The declarative list of checks: adding one is adding one line here."""
    InSet, Between = gxe.ExpectColumnValuesToBeInSet, gxe.ExpectColumnValuesToBeBetween
    true = {"value_set": [True]}
    side = {"min_value": rules.min_side, "max_value": rules.max_side, "row_condition": DECODES}
    per_image = [
        ("path", gxe.ExpectColumnValuesToBeUnique, {}, "each file is listed once"),
        ("decodes", InSet, true, "file exists and decodes"),
        ("mode", InSet, {"value_set": list(rules.allowed_modes), "row_condition": DECODES},
         "colour mode is allowed"),
        ("width", Between, side, "image side within limits"),
        ("height", Between, side, "image side within limits"),
    ]
    checks = [Check(table, *row) for table in IMAGE_TABLES for row in per_image]
    checks += [
        Check("classification", "label", Between, {"min_value": 0},
              "-1 means class_name is not in the class set", detail="class_name"),
        Check("sysu", "has_gallery_match", InSet, true,
              "query identity has an image in the gallery", detail="identity"),
        Check("coco_images", "size_matches", InSet, true, "decoded size equals the json's"),
        Check("coco_annotations", "image_exists", InSet, true, "image_id is a listed image",
              detail="image_id"),
        Check("coco_annotations", "category_known", InSet, true, "category_id is a known category",
              detail="category_id"),
        Check("coco_annotations", "bbox_inside", InSet, true, "bbox lies inside the image"),
        Check("coco_annotations", "bbox_positive", InSet, true, "bbox has a positive size"),
    ]
    # One expectation per split: a GX row condition selects that split's rows.
    checks += [
        Check("classification_counts", "count", Between,
              {"min_value": n, "row_condition": Column("split") == split},
              f"every class has at least {n} images in {split}", detail="class_name")
        for split, n in sorted(rules.min_images_per_class.items())
    ]
    return checks


def _non_empty(table: str) -> Check:
    """Table-level check added to every table: an empty manifest means nothing was found."""
    return Check(table, None, gxe.ExpectTableRowCountToBeBetween, {"min_value": 1},
                 "no rows: the table is empty")


def rule_text(check: Check) -> str:
    """Human wording of a check's expectation, e.g. 'width to be between 32 and 4096'."""
    kw = check.kwargs
    if check.expectation is gxe.ExpectTableRowCountToBeBetween:
        return f"table to have at least {kw['min_value']} row"
    if check.expectation is gxe.ExpectColumnValuesToBeUnique:
        what = "to be unique"
    elif check.expectation is gxe.ExpectColumnValuesToBeInSet:
        values = [str(v) for v in kw["value_set"]]
        what = f"to be {values[0]}" if len(values) == 1 else f"to be one of {', '.join(values)}"
    elif check.expectation is gxe.ExpectColumnValuesToBeBetween:
        low, high = kw.get("min_value"), kw.get("max_value")
        what = (f"to be between {low} and {high}" if low is not None and high is not None
                else f"to be >= {low}" if low is not None else f"to be <= {high}")
    else:
        what = f"to pass {check.expectation.__name__}"
    condition = kw.get("row_condition")
    return f"{check.column} {what}" + (f" where {condition!r}" if condition is not None else "")


@dataclass(frozen=True)
class Failure:
    """One offending row for one failed expectation (path '' for a table-level failure)."""

    table: str
    path: str
    expectation: str
    description: str
    value: str
    error: str = ""
    row: Hashable | None = None  # the DataFrame index label; None for table-level failures

    def line(self) -> str:
        """`FAIL [table] path: expect <rule> (<description>) -- got <value>[: <error>]`."""
        where = self.path or "(table)"
        error = f": {self.error}" if self.error else ""
        return (f"FAIL [{self.table}] {where}: expect {self.expectation} ({self.description})"
                f" -- got {self.value}{error}")


@dataclass
class TableResult:
    """Per-table counts kept for `Report.summary()`."""

    rows: int
    evaluated: int
    failed: int


@dataclass
class Report:
    """Outcome of `run_checks`: every failure, the offending index labels and per-table counts."""

    success: bool
    failures: list[Failure]
    bad_rows: dict[str, set[Hashable]]
    tables: dict[str, TableResult] = field(default_factory=dict)
    docs_index: pathlib.Path | None = None

    def summary(self) -> dict:
        """JSON-serialisable per-table counts and the overall success."""
        return {
            "success": self.success,
            "tables": {
                name: {
                    "rows": t.rows,
                    "expectations_evaluated": t.evaluated,
                    "expectations_failed": t.failed,
                    "offending_rows": len(self.bad_rows.get(name, ())),
                }
                for name, t in sorted(self.tables.items())
            },
        }

    def format_failures(self, limit: int | None = None) -> str:
        """One line per failure, ordered by (table, path, expectation); `limit` caps the lines."""
        lines = [f.line() for f in self.failures]
        if limit is not None and len(lines) > limit:
            lines = lines[:limit] + [f"... and {len(lines) - limit} more failures"]
        return "\n".join(lines)


def run_checks(
    tables: dict[str, pd.DataFrame], rules: Rules, docs_dir: pathlib.Path | None = None
) -> Report:
    """Validate each given table with its GX suite and report every offending row.

    Tables absent from `tables` are skipped; an empty table fails its row-count expectation.
    When `docs_dir` is given, GX Data Docs for this run are written there (index.html).
    """
    context = _context(docs_dir)
    source = context.data_sources.add_pandas("manifests")
    checks = build_checks(rules)
    failures: list[Failure] = []
    bad_rows: dict[str, set[Hashable]] = {}
    results: dict[str, TableResult] = {}
    for name in sorted(tables):
        frame = tables[name]
        table_checks = [_non_empty(name)]
        if not frame.empty:  # row checks on no rows would pass vacuously or fail on missing columns
            table_checks += [c for c in checks if c.table == name]
        validation = _validate(context, source, name, frame, table_checks)
        table_failures = _failures(frame, table_checks, validation)
        failures += table_failures
        bad_rows[name] = {f.row for f in table_failures if f.row is not None}
        stats = validation.statistics
        results[name] = TableResult(len(frame), int(stats["evaluated_expectations"]),
                                    int(stats["unsuccessful_expectations"]))
    failures.sort(key=lambda f: (f.table, f.path, f.expectation, f.value, f.error, str(f.row)))
    report = Report(success=not failures, failures=failures, bad_rows=bad_rows, tables=results)
    if docs_dir is not None:
        report.docs_index = docs.build(context, pathlib.Path(docs_dir), report.summary())
    return report


def _context(docs_dir: pathlib.Path | None):
    """A fresh in-memory GX context, so nothing (no `gx/` folder) is written to the cwd.

    Its only on-disk output is the Data Docs site, and only when `docs_dir` is given. A new
    context per call costs milliseconds and keeps suites of separate runs apart.
    """
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=docs.site_config(docs_dir) if docs_dir is not None else {},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),  # keep tqdm bars out of the logs
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _validate(context, source, name: str, frame: pd.DataFrame, checks: list[Check]):
    """Run `name`'s suite on `frame` (plus the positional ROW column) and return GX's result."""
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for position, check in enumerate(checks):
        column = {"column": check.column} if check.column else {}
        suite.add_expectation(check.expectation(
            **column, **check.kwargs, notes=check.description, meta={CHECK_KEY: position}
        ))
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("manifest")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    index_columns = [ROW, "path"] if "path" in frame.columns else [ROW]
    return definition.run(
        batch_parameters={"dataframe": frame.assign(**{ROW: range(len(frame))})},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns},
    )


def _failures(frame: pd.DataFrame, checks: list[Check], validation) -> list[Failure]:
    """Turn GX's per-expectation results into one Failure per offending row."""
    failures = []
    for result in validation.results:
        if not result.success:
            # Results do not come back in suite order: `meta` carries the Check's position.
            check = checks[result.expectation_config.meta[CHECK_KEY]]
            failures += _result_failures(frame, check, result)
    return failures


def _result_failures(frame: pd.DataFrame, check: Check, result) -> list[Failure]:
    """Failures for one failed expectation: per row, or one table-level entry."""
    table, rule = check.table, rule_text(check)
    error = _exception_message(result.exception_info)
    if error:  # e.g. a missing column: GX caught the exception and marked the expectation failed
        return [Failure(table, "", rule, check.description, "an error", error=error)]
    if check.column is None:
        observed = result.result.get("observed_value")
        return [Failure(table, "", rule, check.description, f"{observed} rows")]
    failures = []
    for hit in result.result.get("unexpected_index_list") or []:
        position = int(hit[ROW])
        row = frame.iloc[position]
        value = str(hit.get(check.column, row[check.column]))
        if check.detail:
            value += f" ({check.detail}={_plain(row[check.detail])!r})"
        failures.append(Failure(
            table, str(row.get("path", "")), rule, check.description, value,
            error=_text(row.get("error")), row=_plain(frame.index[position]),
        ))
    return failures


def _plain(value: Any) -> Any:
    """A numpy scalar as a plain Python value (np.int64(3) -> 3) for readable reprs and labels."""
    return value.item() if isinstance(value, np.generic) else value


def _text(value: Any) -> str:
    """A cell as text, '' for missing values (NaN/None)."""
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _exception_message(info: dict | None) -> str:
    """GX nests caught exceptions per metric ({metric_id: {...}}) or gives one flat dict."""
    if not info:
        return ""
    entries = [info] if "raised_exception" in info else list(info.values())
    messages = {str(e.get("exception_message")) for e in entries
                if isinstance(e, dict) and e.get("raised_exception")}
    return "; ".join(sorted(messages))
