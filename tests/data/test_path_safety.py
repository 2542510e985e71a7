"""Dataset entries never lead outside their dataset root (issue 12, case 1).

A COCO file_name or a SYSU meta-list line with `..` (or an absolute path) and a symlink resolving outside the
root are refused with a DatasetLayoutError naming the file and the entry, before anything opens the outside
file: every open (builtins / io / os / PIL) of a guarded path is recorded and blocked, and each test asserts
that none happened. Symlinks inside the root are followed; external ones only with
validate.follow_external_symlinks.
"""
from __future__ import annotations

import builtins
import io
import json
import os
from pathlib import Path

import PIL.Image
import pytest
from badfiles import good_jpeg_bytes, write

from pipeline.config import compose, validate_params
from pipeline.data.errors import DatasetLayoutError
from pipeline.data.manifest import classification_tables, coco_tables_for, sysu_tables
from pipeline.stages.validate import build_tables


class OpenGuard:
    """Records (and refuses with PermissionError) every open of a forbidden file, also through a symlink."""

    def __init__(self, monkeypatch):
        self.forbidden: set[str] = set()
        self.opened: list[str] = []
        for owner, name in ((builtins, "open"), (io, "open"), (os, "open"), (PIL.Image, "open")):
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name)))

    def forbid(self, path: Path) -> Path:
        self.forbidden.add(os.path.realpath(path))
        return path

    def _wrap(self, fn):
        def guarded(file, *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(file)) in self.forbidden:
                self.opened.append(os.fsdecode(file))
                raise PermissionError(f"test guard: {file} must not be opened")
            return fn(file, *args, **kwargs)
        return guarded


@pytest.fixture
def guard(monkeypatch):
    return OpenGuard(monkeypatch)


@pytest.fixture
def outside(tmp_path, guard) -> Path:
    """A valid 64 x 64 JPEG outside every dataset root (boxes of the datasets below fit inside it)."""
    return guard.forbid(write(tmp_path / "outside" / "x.jpg", good_jpeg_bytes((64, 64))))


def _params(tmp_path: Path, datasets: list[str], **validate):
    raw = compose([f"data.classification.root={tmp_path / 'imagenet'}", f"data.sysu.root={tmp_path / 'sysu30k'}",
                   f"data.coco.root={tmp_path / 'coco'}"])
    raw["validate"].update(datasets=datasets, **{k: v for k, v in validate.items() if v})  # False: the default
    return validate_params(raw)


# --- COCO -----------------------------------------------------------------------------------------
def _coco(tmp_path: Path, file_name: str) -> Path:
    """train2017 with one clean image, val2017 with a clean image (id 1) and one named `file_name` (id 2)."""
    root = tmp_path / "coco"
    for split, names in (("train2017", ["1.jpg"]), ("val2017", ["1.jpg", file_name])):
        write(root / split / "1.jpg", good_jpeg_bytes((64, 64)))
        data = {"images": [{"id": i, "file_name": n, "width": 64, "height": 64} for i, n in enumerate(names, 1)],
                "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400,
                                 "iscrowd": 0} for i in range(1, len(names) + 1)],
                "categories": [{"id": 1, "name": "circle"}]}
        write(root / "annotations" / f"instances_{split}.json", json.dumps(data).encode())
    return root


def _escapes(outside: Path) -> dict[str, str]:
    return {"dotdot": "../../outside/x.jpg",  # from coco/val2017/ up to tmp_path
            "deep_dotdot": "../" * 40 + str(outside).lstrip("/"),  # past / and back down (the /etc/passwd probe)
            "absolute": str(outside)}


@pytest.mark.parametrize("follow", [False, True])  # '..' out of the root is refused whatever the option
@pytest.mark.parametrize("kind", ["dotdot", "deep_dotdot", "absolute"])
def test_coco_file_name_leaving_the_root_is_refused_before_opening(tmp_path, outside, guard, kind, follow):
    entry = _escapes(outside)[kind]
    root = _coco(tmp_path, entry)
    with pytest.raises(DatasetLayoutError) as err:
        build_tables(_params(tmp_path, ["coco"], follow_external_symlinks=follow))
    msg = str(err.value)
    assert str(root / "annotations" / "instances_val2017.json") in msg and "image id 2 file_name" in msg
    assert repr(entry) in msg and "outside the dataset root" in msg
    assert guard.opened == []


# --- SYSU-30k meta lists --------------------------------------------------------------------------
SYSU_FILES = ["sysu_train_set_all/0000000001/0000000001_1.jpg", "sysu_test_set_all/query/0000007/0000007_c2_1.jpg",
              "sysu_test_set_all/gallery/0000007/0000007_c1_1.jpg"]


@pytest.mark.parametrize("split,entry", [
    ("query", "../outside/0000007/0000007_c2_9.jpg"),
    ("gallery", "sysu_test_set_all/gallery/../../../outside/0000007/0000007_c1_9.jpg"),
    ("train", "{outside}/0000000009/0000000009_1.jpg"),  # absolute
])
def test_sysu_meta_line_leaving_the_root_is_refused_before_opening(tmp_path, guard, split, entry):
    root = tmp_path / "sysu30k"
    for rel in SYSU_FILES:
        write(root / rel, good_jpeg_bytes((32, 64)))
    entry = entry.format(outside=tmp_path / "outside")
    target = guard.forbid(write(root / entry, good_jpeg_bytes((32, 64))))  # a valid image, parseable name
    assert not target.resolve().is_relative_to(root)
    meta = root / "meta" / f"{split}.txt"
    listed = [SYSU_FILES[("train", "query", "gallery").index(split)]]
    write(meta, ("\n".join([*listed, entry]) + "\n").encode())
    with pytest.raises(DatasetLayoutError) as err:
        sysu_tables(root)
    msg = str(err.value)
    assert f"{meta}: line {len(listed) + 1} {entry!r}" in msg and "outside the dataset root" in msg
    assert guard.opened == []


# --- ImageFolder symlinks -------------------------------------------------------------------------
def _imagefolder(tmp_path: Path) -> Path:
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            for i in range(2):
                write(root / split / cls / f"{i}.jpg", good_jpeg_bytes((32, 32)))
    return root


@pytest.mark.parametrize("link", ["file", "class_folder"])
def test_imagefolder_symlink_outside_the_root_is_refused_by_default(tmp_path, outside, guard, link):
    root = _imagefolder(tmp_path)
    if link == "file":
        (root / "train" / "a" / "evil.jpg").symlink_to(outside)
        source, what = root / "train" / "a", "file 'evil.jpg'"
    else:
        (root / "train" / "c").symlink_to(outside.parent, target_is_directory=True)
        source, what = root / "train", "class folder 'c'"
    with pytest.raises(DatasetLayoutError) as err:
        build_tables(_params(tmp_path, ["classification"]))
    msg = str(err.value)
    assert f"{source}: {what}" in msg and str(outside.parent) in msg and "follow_external_symlinks" in msg
    assert guard.opened == []


def test_imagefolder_symlink_outside_the_root_is_followed_with_the_option(tmp_path, guard):
    root = _imagefolder(tmp_path)
    target = write(tmp_path / "outside" / "x.jpg", good_jpeg_bytes((40, 30)))  # not forbidden here
    (root / "train" / "a" / "ext.jpg").symlink_to(target)
    table = build_tables(_params(tmp_path, ["classification"], follow_external_symlinks=True))["classification"]
    row = table[table["path"] == "train/a/ext.jpg"].iloc[0]
    assert row["decodes"] and (row["width"], row["height"], row["label"]) == (40, 30, 0)


def test_symlinks_inside_the_root_are_followed(tmp_path, guard):
    root = _imagefolder(tmp_path)
    (root / "train" / "a" / "same.jpg").symlink_to(root / "val" / "b" / "0.jpg")  # absolute, inside
    (root / "train" / "b" / "rel.jpg").symlink_to(Path("..") / "a" / "1.jpg")  # relative, inside
    (root / "val" / "c").symlink_to(root / "val" / "a", target_is_directory=True)  # a folder, inside
    table = classification_tables(root, ("train", "val"))["classification"]
    rows = table.set_index("path")
    assert rows.loc["train/a/same.jpg", "decodes"] and rows.loc["train/b/rel.jpg", "decodes"]
    assert rows.loc["val/c/0.jpg", "decodes"] and rows.loc["val/c/0.jpg", "label"] == -1  # not a train class
    coco = _coco(tmp_path, "link.jpg")
    (coco / "val2017" / "link.jpg").symlink_to("1.jpg")
    images = coco_tables_for(coco, ("val2017",))["coco_images"]
    assert images["decodes"].all() and list(images["path"]) == ["val2017/1.jpg", "val2017/link.jpg"]
    assert guard.opened == []


# --- coco_finetune's image loading (the stage may run on a json that was never validated) ----------
def test_coco_finetune_loading_refuses_paths_leaving_the_root(tmp_path, outside, guard):
    from pipeline.data.readers_coco import read_coco
    from pipeline.evaluation.coco_data import CocoDetection, load_split

    root = _coco(tmp_path, "../../outside/x.jpg")
    ann = root / "annotations" / "instances_val2017.json"
    with pytest.raises(DatasetLayoutError, match=rf"{ann}: image id 2 file_name '\.\./\.\./outside/x\.jpg'"):
        load_split(root, "val2017", train=False)
    # load_image itself, for a dataset built without load_split's up-front check.
    ds = CocoDetection(read_coco(root, "val2017"), [1, 2], {1: 1})
    assert ds[0][0].shape == (3, 64, 64)
    with pytest.raises(DatasetLayoutError, match="outside the dataset root"):
        ds.load_image(2)
    with pytest.raises(DatasetLayoutError, match="outside the dataset root"):
        ds[1]
    assert guard.opened == []


def test_coco_finetune_loading_follows_the_symlink_policy(tmp_path, outside, guard):
    from pipeline.evaluation.coco_data import load_split

    root = _coco(tmp_path, "ext.jpg")
    (root / "val2017" / "ext.jpg").symlink_to(outside)
    with pytest.raises(DatasetLayoutError, match=r"image id 2 file_name 'ext\.jpg' is a symlink.*outside"):
        load_split(root, "val2017", train=False)
    assert guard.opened == []
    guard.forbidden.clear()
    ds = load_split(root, "val2017", train=False, follow_external_symlinks=True)
    assert ds[1][0].shape == (3, 64, 64)
