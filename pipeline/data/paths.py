"""Containment of dataset paths: every entry a reader is given must stay inside its dataset root.

Entries come from files we do not control (a COCO `file_name`, a SYSU `meta/*.txt` line, an ImageFolder
listing that may hold symlinks). `inside_root` checks one entry before anything opens it:

- lexically: `..` components or an absolute path that leave the root are always refused;
- after resolving symlinks: a path whose real location is outside the (resolved) root is refused unless
  `follow_external_symlinks` (the `validate.follow_external_symlinks` option) allows it. Symlinks that stay
  inside the root are followed.

Nothing is opened here: the checks only look at path components (lstat / readlink through realpath).
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetLayoutError


class PathOutsideRootError(DatasetLayoutError):
    """An entry of a dataset names a file outside the dataset root; the message names source and entry."""


def inside_root(root: str | Path, entry: str | Path, *, source: str | Path, what: str = "entry",
                base: str | Path | None = None, follow_external_symlinks: bool = False) -> Path:
    """`base / entry` (base defaults to root) after checking that it stays inside `root`.

    `source` (the json, list file or folder the entry came from) and `what` (e.g. "line 3", "image id 7
    file_name") name the entry in the error message. Returns the joined path as given (not resolved), for
    the caller to open. Raises PathOutsideRootError when the entry leaves the root, DatasetLayoutError
    when it is not a path at all.
    """
    if not isinstance(entry, (str, os.PathLike)):
        raise DatasetLayoutError(f"{source}: {what} {entry!r} is not a path; expected a file name inside {root}")
    root = Path(root)
    path = Path(base if base is not None else root) / entry
    try:
        lexical = Path(os.path.normpath(os.path.abspath(path)))
        real = Path(os.path.realpath(path))
        real_root = Path(os.path.realpath(root))
    except ValueError as e:  # e.g. an embedded NUL byte
        raise DatasetLayoutError(f"{source}: {what} {str(entry)!r} is not a valid path ({e})") from None
    if not lexical.is_relative_to(Path(os.path.normpath(os.path.abspath(root)))):
        raise PathOutsideRootError(f"{source}: {what} {str(entry)!r} leads to {lexical}, outside the dataset root "
                                   f"{root}; expected a path inside the root (no '..' out of it, no absolute path)")
    if not follow_external_symlinks and not real.is_relative_to(real_root):
        raise PathOutsideRootError(f"{source}: {what} {str(entry)!r} is a symlink (or lies under one) resolving to "
                                   f"{real}, outside the dataset root {root}; expected files inside the root "
                                   "(set validate.follow_external_symlinks=true to allow external symlinks)")
    return path
