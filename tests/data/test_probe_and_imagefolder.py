"""Probing images (every bad-file kind) and the ImageFolder reader's layout errors."""
from __future__ import annotations

import pytest
from badfiles import BAD_KINDS, good_jpeg_bytes, rgba_png, write

from pipeline.data.errors import DatasetLayoutError
from pipeline.data.probe import ACCEPTED_MODES, load_rgb, probe_image, probe_many
from pipeline.data.readers_imagefolder import class_set, read_imagefolder


def test_good_jpeg(tmp_path):
    row = probe_image(write(tmp_path / "a.jpg", good_jpeg_bytes((40, 30))))
    assert row["decodes"] and (row["width"], row["height"], row["mode"]) == (40, 30, "RGB")
    assert row["bytes"] > 0 and row["error"] == ""


@pytest.mark.parametrize("kind,needle", [("corrupt", "Error"), ("truncated", "truncated"),
                                         ("zero_byte", "zero-byte"), ("not_an_image", "cannot identify")])
def test_bad_files_do_not_decode_and_say_why(tmp_path, kind, needle):
    row = probe_image(write(tmp_path / f"{kind}.jpg", BAD_KINDS[kind]()))
    assert not row["decodes"]
    assert needle.lower() in row["error"].lower()


def test_missing_file(tmp_path):
    row = probe_image(tmp_path / "nope.jpg")
    assert not row["decodes"] and "missing" in row["error"]


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_are_accepted_and_converted(tmp_path, mode):
    path = write(tmp_path / f"{mode}.jpg", good_jpeg_bytes(mode=mode))
    row = probe_image(path)
    assert row["decodes"] and row["mode"] == mode and mode in ACCEPTED_MODES
    assert load_rgb(path).mode == "RGB"


def test_other_modes_are_flagged_for_rejection(tmp_path):
    row = probe_image(rgba_png(tmp_path / "rgba.png"))
    assert row["decodes"] and row["mode"] == "RGBA" and "RGBA" not in ACCEPTED_MODES


def test_probe_many_keeps_order(tmp_path):
    paths = [write(tmp_path / f"{i}.jpg", good_jpeg_bytes((10 + i, 10))) for i in range(20)]
    assert [r["width"] for r in probe_many(paths)] == [10 + i for i in range(20)]


def _tree(root, layout):
    for rel in layout:
        write(root / rel, good_jpeg_bytes())
    return root


def test_missing_split_names_the_folder(tmp_path):
    _tree(tmp_path, ["train/a/1.jpg"])
    with pytest.raises(DatasetLayoutError, match=r"val: missing"):
        read_imagefolder(tmp_path, "val")


def test_missing_class_folder_shows_as_absent_and_stray_class_gets_minus_one(tmp_path):
    _tree(tmp_path, ["train/a/1.jpg", "train/b/1.jpg", "val/a/1.jpg", "val/zebra/1.jpg"])
    classes = class_set(tmp_path)
    val = read_imagefolder(tmp_path, "val", classes)
    assert classes == ["a", "b"] and "b" not in val.folders
    assert {im.class_name: im.label for im in val.images} == {"a": 0, "zebra": -1}


def test_files_directly_under_a_split_are_an_error(tmp_path):
    _tree(tmp_path, ["train/a/1.jpg", "train/loose.jpg"])
    with pytest.raises(DatasetLayoutError, match="loose.jpg"):
        read_imagefolder(tmp_path, "train")


def test_empty_split(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetLayoutError, match="no class folders"):
        class_set(tmp_path)
