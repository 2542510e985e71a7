"""Reader for the SYSU-30k layout (real or embedded): image paths with identity, camera and split.

    sysu_train_set_all/<10-digit bag id>/<bag id>_<n>.jpg          training bags (weak labels)
    sysu_test_set_all/query/<ID>/<ID>_c<cam>_<n>.jpg               queries
    sysu_test_set_all/gallery/<ID>/<ID>_c<cam>_<n>.jpg             true matches
    sysu_test_set_all/gallery/0000others/0000others_c<cam>_<n>.jpg distractors
    meta/{train,query,gallery}.txt                                  image paths relative to the root
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.errors import DatasetLayoutError
from pipeline.data.paths import inside_root

TRAIN_DIR = "sysu_train_set_all"
SPLIT_DIRS = {"train": TRAIN_DIR, "query": "sysu_test_set_all/query", "gallery": "sysu_test_set_all/gallery"}
DISTRACTOR_ID, DISTRACTOR_LABEL = "0000others", -1000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_TEST_NAME = re.compile(r"^(?P<identity>[^_/]+)_c(?P<camera>\d+)_(?P<n>\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)


@dataclass(frozen=True)
class SysuImage:
    """One image of the dataset; `label` is the integer identity (-1000 for distractors, the bag id in training)."""

    path: Path
    rel: str
    split: str
    identity: str
    label: int
    camera: int
    is_distractor: bool


def read_sysu(root: Path, use_meta: bool = True, *, follow_external_symlinks: bool = False) -> list[SysuImage]:
    """All images of a SYSU-30k-layout dataset: train, then query, then gallery.

    With use_meta and a `meta/<split>.txt` present, that list is used (listed files need not exist: the
    validation stage reports missing ones); otherwise the split folder is walked. The real training set
    has ~29M images, so its folders are never walked when the meta list exists.
    Every entry must stay inside the root: a list line leaving it (`..`, an absolute path) raises
    PathOutsideRootError naming the list and line, as does a symlink resolving outside the root unless
    `follow_external_symlinks`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: SYSU-30k root folder does not exist")
    for split in ("query", "gallery"):
        if not (root / SPLIT_DIRS[split]).is_dir():
            raise DatasetLayoutError(f"{root / SPLIT_DIRS[split]}: expected the SYSU-30k {split} folder")
    images = []
    for split in ("train", "query", "gallery"):
        meta = root / "meta" / f"{split}.txt"
        if use_meta and meta.is_file():  # lazily: the real training list has ~29M lines
            entries = ((meta, f"line {n}", rel) for n, rel in _read_list(meta))
        else:
            entries = ((root, "file", rel) for rel in _walk(root, SPLIT_DIRS[split]))
        parse = _train_image if split == "train" else _test_image
        for source, what, rel in entries:
            inside_root(root, rel, source=source, what=what, follow_external_symlinks=follow_external_symlinks)
            images.append(parse(root, rel, split))
    return images


def _read_list(meta: Path) -> Iterator[tuple[int, str]]:
    """(line number, entry) of the non-blank lines."""
    with meta.open() as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                yield n, line.strip()


def _walk(root: Path, split_dir: str) -> list[str]:
    """Image files under root/split_dir (missing folder: none), as sorted posix paths relative to root."""
    base = root / split_dir
    if not base.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in base.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _test_image(root: Path, rel: str, split: str) -> SysuImage:
    parts = rel.split("/")
    match = _TEST_NAME.match(parts[-1])
    if match is None:
        raise DatasetLayoutError(f"{root / rel}: expected a {split} file name like <ID>_c<camera>_<n>.jpg")
    identity = match["identity"]
    folder = parts[-2] if len(parts) > 1 else ""
    if identity != folder:
        raise DatasetLayoutError(f"{root / rel}: identity prefix {identity!r} differs from its folder {folder!r}")
    distractor = identity == DISTRACTOR_ID
    return SysuImage(root / rel, rel, split, identity, DISTRACTOR_LABEL if distractor else _int(root, rel, identity),
                     int(match["camera"]), distractor)


def _train_image(root: Path, rel: str, split: str) -> SysuImage:
    parts = rel.split("/")
    bag = parts[-2] if len(parts) > 1 else ""
    return SysuImage(root / rel, rel, split, bag, _int(root, rel, bag), -1, False)


def _int(root: Path, rel: str, identity: str) -> int:
    if not identity.isdigit():
        raise DatasetLayoutError(f"{root / rel}: expected a numeric identity or bag id, got {identity!r}")
    return int(identity)
