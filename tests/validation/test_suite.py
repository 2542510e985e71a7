"""Tests for the GX manifest checks (pipeline.validation)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from pipeline.validation import Report, Rules, run_checks  # noqa: E402

RULES = Rules(min_side=32, max_side=4096, min_images_per_class={"train": 2, "val": 1})
ANN = "annotations/instances_val2017.json#ann={}"


def _image(path: str, **overrides) -> dict:
    """A decoding 64x64 RGB image row; overrides change single fields."""
    row = dict(path=path, split=path.split("/")[0], width=64, height=64, mode="RGB",
               bytes=1000, decodes=True, error="")
    return row | overrides


def _classification(path: str, label: int, **overrides) -> dict:
    return _image(path, class_name=path.split("/")[1], label=label) | overrides


def _sysu(path: str, camera: int = -1, **overrides) -> dict:
    return _image(path, identity=path.split("/")[1], camera=camera, is_distractor=False,
                  has_gallery_match=True) | overrides


def _annotation(ann_id: int, image_id: int = 1, **overrides) -> dict:
    row = dict(path=ANN.format(ann_id), split="val", ann_id=ann_id, image_id=image_id,
               category_id=1, image_exists=True, category_known=True, bbox_inside=True,
               bbox_positive=True)
    return row | overrides


def _counts(counts: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame([dict(path=key, split=key.split("/")[0], class_name=key.split("/")[1],
                              count=n) for key, n in counts.items()])


def _frame(rows: list[dict], bad: list[dict] = ()) -> pd.DataFrame:
    """Clean rows at index 0.., bad rows at index 100.. (the labels bad_rows must return)."""
    index = list(range(len(rows))) + list(range(100, 100 + len(bad)))
    return pd.DataFrame(list(rows) + list(bad), index=index)


CLEAN_COUNTS = {"train/n0": 2, "train/n1": 2, "val/n0": 1, "val/n1": 1}


def clean_tables() -> dict[str, pd.DataFrame]:
    """One small, valid manifest per table."""
    return {
        "classification": _frame([
            _classification("train/n0/a.jpg", 0), _classification("train/n0/b.jpg", 0),
            _classification("train/n1/a.jpg", 1), _classification("train/n1/b.jpg", 1, mode="L"),
            _classification("val/n0/a.jpg", 0), _classification("val/n1/a.jpg", 1, mode="CMYK"),
        ]),
        "classification_counts": _counts(CLEAN_COUNTS),
        "sysu": _frame([_sysu("train/0001/c1_1.jpg"), _sysu("query/0002/c3_1.jpg", camera=3),
                        _sysu("gallery/0002/c1_1.jpg", camera=1)]),
        "coco_images": _frame([_image("val2017/000000000001.jpg", image_id=1, size_matches=True)]),
        "coco_annotations": _frame([_annotation(1)]),
    }


def bad_tables() -> dict[str, pd.DataFrame]:
    """The clean tables plus one row per kind of problem (index labels from 100)."""
    clean = clean_tables()
    broken = dict(decodes=False, width=-1, height=-1, mode="", error="cannot identify image file")
    return {
        "classification": _frame(clean["classification"].to_dict("records"), [
            _classification("train/n0/broken.jpg", 0, **broken),                 # 100
            _classification("train/n0/dup.jpg", 0),                               # 101
            _classification("train/n0/dup.jpg", 0),                               # 102
            _classification("train/n0/palette.png", 0, mode="P"),                 # 103
            _classification("train/n0/tiny.jpg", 0, width=8),                     # 104
            _classification("train/zebra/a.jpg", -1),                             # 105
        ]),
        "classification_counts": _counts(CLEAN_COUNTS | {"train/n1": 1, "val/n2": 0}),
        "sysu": _frame(clean["sysu"].to_dict("records"),
                       [_sysu("query/0003/c3_1.jpg", camera=3, has_gallery_match=False)]),
        "coco_images": _frame(clean["coco_images"].to_dict("records"), [
            _image("val2017/000000000002.jpg", image_id=2, size_matches=False)]),
        "coco_annotations": _frame(clean["coco_annotations"].to_dict("records"), [
            _annotation(100, bbox_inside=False),
            _annotation(101, image_id=99, image_exists=False)]),
    }


# (table, path, checked column, rendered value, index labels in bad_rows)
BAD_CASES = [
    ("classification", "train/n0/broken.jpg", "decodes", "False", {100}),
    ("classification", "train/n0/dup.jpg", "path", "train/n0/dup.jpg", {101, 102}),
    ("classification", "train/n0/palette.png", "mode", "P", {103}),
    ("classification", "train/n0/tiny.jpg", "width", "8", {104}),
    ("classification", "train/zebra/a.jpg", "label", "-1 (class_name='zebra')", {105}),
    ("classification_counts", "train/n1", "count", "1 (class_name='n1')", {1}),
    ("classification_counts", "val/n2", "count", "0 (class_name='n2')", {4}),
    ("sysu", "query/0003/c3_1.jpg", "has_gallery_match", "False (identity='0003')", {100}),
    ("coco_images", "val2017/000000000002.jpg", "size_matches", "False", {100}),
    ("coco_annotations", ANN.format(100), "bbox_inside", "False", {100}),
    ("coco_annotations", ANN.format(101), "image_exists", "False (image_id=99)", {101}),
]


@pytest.fixture(scope="module")
def clean_report() -> Report:
    return run_checks(clean_tables(), RULES)


@pytest.fixture(scope="module")
def bad_report() -> Report:
    return run_checks(bad_tables(), RULES)


def test_clean_tables_pass(clean_report):
    assert clean_report.success, clean_report.format_failures()
    assert clean_report.failures == []
    assert all(rows == set() for rows in clean_report.bad_rows.values())
    assert clean_report.format_failures() == ""


@pytest.mark.parametrize("table, path, column, value, rows", BAD_CASES,
                         ids=[f"{c[0]}:{c[2]}" for c in BAD_CASES])
def test_each_bad_row_fails_its_expectation(bad_report, table, path, column, value, rows):
    hits = [f for f in bad_report.failures if f.table == table and f.path == path]
    # Exactly one expectation per bad row (a duplicate path is reported for both of its rows).
    assert len(hits) == len(rows), [f.line() for f in hits]
    assert {f.expectation.split()[0] for f in hits} == {column}
    assert {f.value for f in hits} == {value}
    assert {f.row for f in hits} == rows
    assert rows <= bad_report.bad_rows[table]


def test_only_the_bad_rows_fail(bad_report):
    assert not bad_report.success
    expected = {(t, p, c) for t, p, c, _, _ in BAD_CASES}
    assert {(f.table, f.path, f.expectation.split()[0]) for f in bad_report.failures} == expected
    assert bad_report.bad_rows["classification"] == {100, 101, 102, 103, 104, 105}
    assert bad_report.bad_rows["classification_counts"] == {1, 4}


def test_not_decoding_row_reported_once_with_its_error(bad_report):
    [failure] = [f for f in bad_report.failures if f.path == "train/n0/broken.jpg"]
    assert failure.error == "cannot identify image file"
    assert failure.line() == (
        "FAIL [classification] train/n0/broken.jpg: expect decodes to be True "
        "(file exists and decodes) -- got False: cannot identify image file"
    )


def test_label_failure_says_class_not_in_class_set(bad_report):
    [failure] = [f for f in bad_report.failures if f.path == "train/zebra/a.jpg"]
    assert "not in the class set" in failure.line() and "zebra" in failure.line()


def test_empty_table_fails_with_clear_message():
    empty = clean_tables()["sysu"].iloc[:0]
    report = run_checks({"sysu": empty}, RULES)
    assert not report.success
    [failure] = report.failures
    assert (failure.table, failure.path) == ("sysu", "")
    assert "no rows" in report.format_failures() and "[sysu]" in report.format_failures()
    assert report.summary()["tables"]["sysu"]["rows"] == 0


def test_missing_column_is_reported_not_raised():
    tables = {"coco_images": clean_tables()["coco_images"].drop(columns="size_matches")}
    report = run_checks(tables, RULES)
    [failure] = report.failures
    assert failure.expectation.startswith("size_matches") and "size_matches" in failure.error


def test_summary_is_json_serialisable(bad_report):
    summary = json.loads(json.dumps(bad_report.summary()))
    assert summary["success"] is False
    assert summary["tables"]["classification"] == {
        "rows": 12, "expectations_evaluated": 7, "expectations_failed": 5, "offending_rows": 6,
    }
    assert summary["tables"]["coco_annotations"]["expectations_failed"] == 2


def test_format_failures_is_deterministic(bad_report):
    shuffled = {name: frame.sample(frac=1, random_state=1)
                for name, frame in reversed(list(bad_tables().items()))}
    text = bad_report.format_failures()
    assert run_checks(shuffled, RULES).format_failures() == text
    keys = [(f.table, f.path, f.expectation) for f in bad_report.failures]
    assert keys == sorted(keys)
    assert len(text.splitlines()) == 12
    limited = bad_report.format_failures(limit=2).splitlines()
    assert limited[:2] == text.splitlines()[:2] and limited[2] == "... and 10 more failures"


def test_data_docs_written_only_to_docs_dir(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # GX would create gx/ here if it used a file context
    docs_dir = tmp_path / "docs"
    report = run_checks(bad_tables(), RULES, docs_dir=docs_dir)
    index = docs_dir / "index.html"
    assert report.docs_index == index.resolve() and index.is_file()
    assert list(cwd.iterdir()) == []
    page = index.read_text()
    # The static (offline) list links every table's validation page, which GX wrote.
    for table in bad_tables():
        href = page.split(f'<a href="validations/{table}/', 1)[1].split('"', 1)[0]
        assert (docs_dir / "validations" / table / href).is_file()
    assert "Manifest validation: FAILED" in page
