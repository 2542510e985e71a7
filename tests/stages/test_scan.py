"""The scan stage: a listing of the dataset folders, so that DVC sees an added empty class folder.

DVC does not track empty folders: without the listing an empty class folder leaves `dvc repro` "up to
date" although the class set (read from the folder tree) changed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from pipeline.config import PARAMS_FILE, read_yaml

TREE = Path("data/scan/tree.json")


def _files(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A working directory with a small ImageFolder, SYSU-30k and COCO tree and a params.yaml naming them."""
    _files(tmp_path / "imagenet/train/circle", "1.jpg", "2.jpg")
    _files(tmp_path / "imagenet/train/square", "1.jpg")
    _files(tmp_path / "imagenet/val/circle", "1.jpg")
    _files(tmp_path / "imagenet/val/square", "1.jpg", "2.jpg", "3.jpg")
    _files(tmp_path / "sysu/sysu_train_set_all/0001", "a.jpg")
    _files(tmp_path / "sysu/sysu_test_set_all/query")
    _files(tmp_path / "sysu/meta", "train.txt")
    _files(tmp_path / "coco/train2017", "1.jpg", "2.jpg")
    _files(tmp_path / "coco/annotations", "instances_train2017.json")
    raw = read_yaml(PARAMS_FILE)
    for name, folder in (("classification", "imagenet"), ("sysu", "sysu"), ("coco", "coco")):
        raw["data"][name]["root"] = str(tmp_path / folder)
    YAML().dump(raw, tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _scan() -> dict:
    from pipeline.stages import scan

    scan.main()
    return json.loads(TREE.read_text())


def test_listing_counts_entries_per_class_folder_and_top_level_folder(project):
    tree = _scan()
    assert tree["classification"] == {"root": str(project / "imagenet"), "folders": {
        "train": 2, "train/circle": 2, "train/square": 1, "val": 2, "val/circle": 1, "val/square": 3}}
    assert tree["sysu"]["folders"] == {"meta": 1, "sysu_test_set_all": 1, "sysu_train_set_all": 1}
    assert tree["coco"]["folders"] == {"annotations": 1, "train2017": 2}


def test_listing_is_deterministic_and_sees_an_empty_class_folder(project):
    _scan()
    before = TREE.read_bytes()
    _scan()
    assert TREE.read_bytes() == before  # unchanged tree, same bytes: validate stays cached
    (project / "imagenet/train/zebra").mkdir()
    tree = _scan()
    assert tree["classification"]["folders"]["train/zebra"] == 0 and tree["classification"]["folders"]["train"] == 3


def test_missing_root_is_listed_as_missing(project):
    import shutil

    shutil.rmtree(project / "coco")
    assert _scan()["coco"]["folders"] is None


# `dvc repro` re-running validate for an added empty class folder: tests/test_pipeline_e2e.py (real DVC).
