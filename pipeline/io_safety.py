"""Atomic writes that clean up after themselves and say clearly when the disk is full.

Every output of the pipeline is written under a temporary name (`<file>.tmp`, `<file>.partial`, or a
`<folder>.partial/` folder) and renamed into place only when complete, so nothing half-written ever looks
like an output. On ANY failure (an exception, Ctrl-C, or the SIGTERM that `run_stage` turns into SystemExit)
the temporary is removed again, so a failed write does not keep the disk full. A full disk or an exceeded
quota (ENOSPC / EDQUOT) becomes a `DiskFullError` whose one-line message names the destination, the bytes it
needed (when known) and the free space on that filesystem:

    data/pretrain/backbone.pt: disk full writing it (needed ~44.8 MB, 0.3 MB free on /data)

Only a kill -9 can leave a temporary behind; those names are git-ignored and overwritten by the next run.
"""
from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


class DiskFullError(OSError):
    """A write ran out of space (or quota); the message names the file, the bytes needed, the free space.

    An OSError (errno ENOSPC or EDQUOT), so code that handles OSError still sees it as one.
    Attributes: path (destination), needed (bytes, or None), written (bytes written before the disk filled,
    or None), free (bytes free afterwards), mount (the filesystem's mount point), quota (EDQUOT).
    """

    def __init__(self, message: str, *, path: Path | str | None = None, needed: int | None = None,
                 written: int | None = None, free: int | None = None, mount: str | None = None,
                 quota: bool = False):
        super().__init__(message)
        self.errno = getattr(errno, "EDQUOT", errno.ENOSPC) if quota else errno.ENOSPC
        self.path = Path(path) if path is not None else None
        self.needed, self.written, self.free, self.mount, self.quota = needed, written, free, mount, quota


def is_disk_full(exc: BaseException | None) -> bool:
    """True for an OSError meaning 'no space left' or 'quota exceeded' (DiskFullError included)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_cause(exc: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT OSError behind `exc`: itself, or one in its __cause__/__context__ chain.

    Libraries wrap it: torch.save into a file object raises RuntimeError("... unexpected pos ...") with the
    OSError from the file's write as its context.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if is_disk_full(exc):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _quota(exc: BaseException | None) -> bool:
    return isinstance(exc, OSError) and exc.errno == getattr(errno, "EDQUOT", None)


def free_space(path: Path | str) -> tuple[int | None, str | None]:
    """(free bytes for an unprivileged writer, mount point) of the filesystem that holds `path`.

    `path` need not exist: its nearest existing ancestor is asked. (None, None) if nothing can be asked.
    """
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return None, None
    mount = Path(os.path.realpath(p))
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return free, str(mount)


def _size(n: int) -> str:
    if n < 1000 ** 2:
        return f"{n:,} bytes"
    if n >= 10 * 1000 ** 3:
        return f"{n / 1000 ** 3:.1f} GB"
    return f"{n / 1000 ** 2:.1f} MB"


def disk_full_error(path: Path | str, *, needed: int | None = None, written: int | None = None,
                    quota: bool = False) -> DiskFullError:
    """The DiskFullError for `path`, with the free space measured now (after the temporary is gone)."""
    free, mount = free_space(path)
    what = "disk quota exceeded" if quota else "disk full"
    parts = []
    if needed is not None:
        parts.append(f"needed ~{_size(needed)}")
    elif written:
        parts.append(f"needed more than the {_size(written)} written before it filled")
    parts.append(f"{_size(free)} free on {mount}" if free is not None else "free space unknown")
    return DiskFullError(f"{path}: {what} writing it ({', '.join(parts)})", path=Path(path), needed=needed,
                         written=written, free=free, mount=mount, quota=quota)


def describe_disk_full(exc: OSError) -> str:
    """One line for an ENOSPC/EDQUOT OSError raised outside our writers (a library's own write)."""
    if isinstance(exc, DiskFullError):
        return str(exc)
    if exc.filename:
        return str(disk_full_error(os.fsdecode(exc.filename), quota=_quota(exc)))
    free, mount = free_space(os.getcwd())
    what = "disk quota exceeded" if _quota(exc) else "disk full"
    room = f"{_size(free)} free on {mount}" if free is not None else "free space unknown"
    return f"{what} while writing a file it did not name ({room}, the working directory's filesystem)"


def _file_size(path: Path) -> int | None:
    try:
        return path.lstat().st_size
    except OSError:
        return None


def _tree_size(path: Path) -> int | None:
    if not path.is_dir():
        return None
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += _file_size(Path(root) / name) or 0
    return total


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # never hide the original error behind a failed clean-up


@contextmanager
def atomic_write(path: Path | str, *, suffix: str = ".tmp", needed: int | None = None) -> Iterator[Path]:
    """Yield `<path><suffix>` to write; rename it to `path` when the block succeeds.

    On any failure the temporary is removed and the exception re-raised; ENOSPC/EDQUOT come out as a
    DiskFullError naming `path` (`needed`: the bytes it needs, if the caller knows). A stale temporary
    from a killed earlier run is simply overwritten. The parent folder must exist.
    """
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        written = _file_size(tmp)
        _remove(tmp)
        cause = disk_full_cause(e)
        if cause is None or isinstance(e, DiskFullError):
            raise
        raise disk_full_error(path, needed=needed, written=written, quota=_quota(cause)) from None


def write_text_atomic(path: Path | str, text: str, *, suffix: str = ".tmp") -> None:
    """`Path.write_text`, atomically and with a clear DiskFullError."""
    data = text.encode("utf-8")
    write_bytes_atomic(path, data, suffix=suffix)


def write_bytes_atomic(path: Path | str, data: bytes, *, suffix: str = ".tmp") -> None:
    with atomic_write(path, suffix=suffix, needed=len(data)) as tmp:
        tmp.write_bytes(data)


class AtomicDir:
    """Write into `<dest>.partial/`, move it to `dest` only when the block finishes without error.

    A crashed or killed run never leaves a folder that looks complete, and any failure removes the
    `.partial` folder. ENOSPC/EDQUOT inside the block come out as a DiskFullError naming the file (as
    it will be called under `dest`) or, if the error names none, `dest` itself.
    """

    def __init__(self, dest: Path | str):
        self.dest = Path(dest)
        self.tmp = self.dest.with_name(self.dest.name + ".partial")

    def __enter__(self) -> Path:
        shutil.rmtree(self.tmp, ignore_errors=True)  # a stale one from a killed run
        try:
            self.tmp.mkdir(parents=True)
        except OSError as e:
            if is_disk_full(e):
                raise disk_full_error(self.dest, quota=_quota(e)) from None
            raise
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                if self.dest.exists():
                    shutil.rmtree(self.dest)
                self.tmp.rename(self.dest)
            except BaseException as e:
                _remove(self.tmp)
                if disk_full_cause(e) is not None and not isinstance(e, DiskFullError):
                    raise disk_full_error(self.dest, quota=_quota(disk_full_cause(e))) from None
                raise
            return False
        cause = disk_full_cause(exc)
        written = _tree_size(self.tmp) if cause is not None else None
        _remove(self.tmp)
        if cause is None:
            return False
        if isinstance(cause, DiskFullError):
            if cause.path is None:
                return False
            raise disk_full_error(self._outside(cause.path), needed=cause.needed, written=cause.written,
                                  quota=cause.quota) from None
        if cause.filename:
            raise disk_full_error(self._outside(cause.filename), quota=_quota(cause)) from None
        raise disk_full_error(self.dest, written=written, quota=_quota(cause)) from None

    def _outside(self, name) -> Path:
        """A path inside the .partial folder, as it would be named under `dest`."""
        p = Path(os.fsdecode(name))
        try:
            rel = Path(os.path.abspath(p)).relative_to(os.path.abspath(self.tmp))
        except ValueError:
            return p
        return self.dest / rel
