"""A deterministic .beton writer: ffcv's file format, laid out by one process in sample order.

Why ffcv's own `DatasetWriter` is not reproducible (upstream issue 142): its worker processes take
chunks of samples from a shared queue and each books the next free page of the file when its current
page is full, so which samples share a page, the page order and the order of the allocation table all
depend on process scheduling; `write_mode='proportion'` also draws from the unseeded global numpy RNG.
(And if a worker dies on a bad image, its parent waits forever for the progress counter.)

Here the expensive part (decode, resize, JPEG encode) runs in a process pool whose results come back
in sample order, and the main process alone packs them into pages: the same samples and settings give
the same bytes for any number of workers, and a worker's exception reaches the caller.
The layout is ffcv's: header | field descriptors | per-sample metadata | zero padding to a page |
pages of sample data (a sample never straddles two pages) | allocation table. The header and table types
are imported from ffcv so the two cannot drift apart.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ..io_safety import atomic_write
from ..progress import show_progress
from .encode import EncodeSettings, encode_image, init_worker

MIN_PAGE_SIZE = 1 << 21  # ffcv.writer.MIN_PAGE_SIZE (2 MiB)


@dataclass(frozen=True)
class WriteStats:
    path: Path
    samples: int
    bytes: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.samples / max(self.seconds, 1e-9)


def page_size_for(max_resolution: int) -> int:
    """Smallest power of two >= 2 MiB that holds twice a raw image of the largest allowed side.

    A sample must fit in one page; a JPEG is far smaller than raw pixels, the factor 2 is headroom.
    """
    need = 2 * 3 * max_resolution * max_resolution
    size = MIN_PAGE_SIZE
    while size < need:
        size *= 2
    return size


def _encoded(jobs: list, num_workers: int, desc: str) -> Iterator[tuple[int, int, int, bytes]]:
    """encode_image over jobs, results in job order; a process pool when num_workers > 1."""
    disable = not show_progress()
    if num_workers <= 1 or len(jobs) < 2 * num_workers:
        yield from tqdm(map(encode_image, jobs), total=len(jobs), desc=desc, disable=disable)
        return
    # fork: workers start instantly and need no importable __main__; they never touch torch, whose thread
    # pools (the parent imported torch through ffcv) are what makes fork unsafe. A worker that dies raises
    # BrokenProcessPool here instead of hanging.
    chunk = max(1, min(64, len(jobs) // (num_workers * 8)))
    pool = ProcessPoolExecutor(num_workers, mp_context=mp.get_context("fork"), initializer=init_worker)
    try:
        yield from tqdm(pool.map(encode_image, jobs, chunksize=chunk), total=len(jobs), desc=desc,
                        disable=disable)
    finally:  # on an error, drop the queued work instead of encoding the rest of the dataset first
        pool.shutdown(wait=True, cancel_futures=True)


def write_beton(dest: Path, images: Sequence[tuple[str, str]], ints: Mapping[str, Sequence[int]],
                settings: EncodeSettings, num_workers: int = 0) -> WriteStats:
    """Write `dest` with an `image` field (RGBImageField) followed by one IntField per entry of `ints`.

    images: (file path, stable key) per sample, the key being what `proportion` mode hashes (the
    manifest path). Written to `<dest>.partial` and renamed when complete.
    """
    from .quick_import import import_ffcv

    import_ffcv()
    from ffcv.fields import IntField, RGBImageField
    from ffcv.types import (
        ALLOC_TABLE_TYPE,
        CURRENT_VERSION,
        TYPE_ID_HANDLER,
        FieldDescType,
        HeaderType,
        get_metadata_type,
    )

    dest = Path(dest)
    n = len(images)
    for name, values in ints.items():
        if len(values) != n:
            raise ValueError(f"{dest}: field {name!r} has {len(values)} values for {n} images")
    fields = {"image": RGBImageField(), **{name: IntField() for name in ints}}
    page_size = page_size_for(settings.max_resolution)
    type_ids = {cls: tid for tid, cls in TYPE_ID_HANDLER.items()}

    header = np.zeros(1, dtype=HeaderType)
    header["version"], header["num_fields"] = CURRENT_VERSION, len(fields)
    header["page_size"], header["num_samples"] = page_size, n
    descs = np.zeros(len(fields), dtype=FieldDescType)
    for i, (name, field) in enumerate(fields.items()):
        descs[i]["type_id"] = type_ids[type(field)]
        encoded = np.frombuffer(name.encode("ascii"), dtype="<u1")[: descs[i]["name"].shape[0]]
        descs[i]["name"][: len(encoded)] = encoded
        descs[i]["arguments"][:] = field.to_binary()[0]
    metadata = np.zeros(n, dtype=get_metadata_type(list(fields.values())))
    for f_ix, name in enumerate(ints, start=1):
        metadata[f"f{f_ix}"] = np.asarray(ints[name], dtype="<i8")
    meta_start = HeaderType.itemsize + descs.nbytes
    data_start = -(-(meta_start + metadata.nbytes) // page_size) * page_size  # next page boundary

    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    alloc = np.zeros(n, dtype=ALLOC_TABLE_TYPE)
    # `<dest>.partial`, removed on any failure; a full disk raises DiskFullError naming dest.
    with atomic_write(dest, suffix=".partial") as tmp:
        with open(tmp, "wb") as fp:
            fp.write(b"\0" * data_start)  # header, descriptors and metadata go here once known
            page, used, page_no = bytearray(page_size), 0, 0
            jobs = [(str(path), key, settings) for path, key in images]
            for i, (mode, h, w, payload) in enumerate(_encoded(jobs, num_workers, f"writing {dest.name}")):
                size = len(payload)
                if size > page_size:
                    raise ValueError(f"{images[i][0]}: encoded image of {size} bytes exceeds the page size "
                                     f"{page_size} of {dest}")
                if used + size > page_size:  # a sample never straddles pages (what ffcv's reader assumes)
                    fp.write(page)
                    page, used, page_no = bytearray(page_size), 0, page_no + 1
                ptr = data_start + page_no * page_size + used
                page[used:used + size] = payload
                used += size
                metadata[i]["f0"] = (mode, w, h, ptr)
                alloc[i] = (i, ptr, size)
            if used:
                fp.write(page)  # whole pages, as ffcv writes them (its page cache reads whole pages)
            header["alloc_table_ptr"] = fp.tell()
            fp.write(alloc.tobytes())
            fp.seek(0)
            fp.write(header.tobytes())
            fp.write(descs.tobytes())
            fp.write(metadata.tobytes())
    return WriteStats(dest, n, dest.stat().st_size, time.perf_counter() - t0)


def read_ints(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The integer fields of a .beton as arrays (no decoding of images), e.g. labels for a kNN bank."""
    from .quick_import import import_ffcv

    import_ffcv()
    from ffcv.reader import Reader

    reader = Reader(str(path))
    index = {name: i for i, name in enumerate(reader.field_names)}
    return {name: np.array(reader.metadata[f"f{index[name]}"]) for name in names}
