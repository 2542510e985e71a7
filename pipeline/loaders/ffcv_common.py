"""What every loader shares: the .beton check, devices, DDP rank/world size and building an ffcv Loader."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..ffcv_io.quick_import import import_ffcv
from ..ffcv_io.sidecar import BetonError, check_beton

import_ffcv()

ORDERS = ("random", "quasi_random", "sequential")


def _fix_ffcv_os_cache_types() -> None:
    """Stop ffcv 1.0.2 from corrupting numba's type cache (patched once, at import).

    `OSCacheManager.state_type` does `t = nb.uint8[::1]; t.mutable = False`: it flips the flag on numba's
    interned array type in place, which changes that object's hash while it is a key in the overload
    tables of every function already compiled for uint8 arrays. With more than one Loader per process
    this shows as `KeyError: (Array(uint8, 1, 'C', ...` from numba (ignored in finalizers, fatal when a
    shared function is compiled again). The replacement builds the same read-only types as new objects.
    """
    import numba as nb
    from ffcv.memory_managers.os_cache import OSCacheManager
    from ffcv.pipeline.compiler import Compiler

    if getattr(OSCacheManager, "_pipeline_fixed", False):
        return
    ro_u8 = nb.types.Array(nb.uint8, 1, "C", readonly=True)
    u64 = nb.types.Array(nb.uint64, 1, "C")

    def state_type(self):
        return nb.types.Tuple([ro_u8, u64, u64])

    def compile_reader(self):
        def read(address, mem_state):
            size = mem_state[2][np.searchsorted(mem_state[1], address)]
            return mem_state[0][address:address + size]

        return Compiler.compile(read, ro_u8(nb.uint64, self.state_type))

    OSCacheManager.state_type = property(state_type)
    OSCacheManager.compile_reader = compile_reader
    OSCacheManager._pipeline_fixed = True


_fix_ffcv_os_cache_types()


def check_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device = {device}: CUDA is not available on this machine (use 'cpu')")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device = {device}: expected cpu or cuda")
    return device


def torch_threads_for(device: torch.device, num_workers: int, torch_threads: int | None) -> int | None:
    """Threads torch should use while an ffcv loader runs: None on CUDA (leave it alone); on the CPU the
    cores the decoder threads leave free, at least one, unless given.

    ffcv's Loader sets torch's thread count to its num_workers at each epoch start; with numba busy on
    the same cores, torch's OpenMP pool then stalls (100x slower batches were measured on 2 cores), so the
    loaders re-apply this count on every batch.
    """
    if device.type != "cpu":
        return None
    return torch_threads or max(1, (os.cpu_count() or 1) - num_workers)


def dist_info(distributed: bool) -> tuple[int, int]:
    """(rank, world size): torch.distributed's when distributed, else (0, 1)."""
    if not distributed:
        return 0, 1
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("distributed=True needs torch.distributed.init_process_group() to have been called "
                         "(ffcv shards each epoch by its rank and world size)")
    return dist.get_rank(), dist.get_world_size()


def order_option(order: str, distributed: bool = False):
    from ffcv.loader import OrderOption

    if order not in ORDERS:
        raise ValueError(f"order = {order!r}: expected one of {ORDERS}")
    if order == "quasi_random" and distributed:
        raise ValueError("order = 'quasi_random' is not supported by ffcv with distributed=True; use 'random'")
    return {"random": OrderOption.RANDOM, "quasi_random": OrderOption.QUASI_RANDOM,
            "sequential": OrderOption.SEQUENTIAL}[order]


def int_pipeline(device: torch.device) -> list:
    from ffcv.fields.decoders import IntDecoder
    from ffcv.transforms import ToDevice, ToTensor

    ops = [IntDecoder(), ToTensor()]
    if device.type == "cuda":
        ops.append(ToDevice(device, non_blocking=True))
    return ops



def make_loader(beton: str | Path, *, pipelines: dict, keep: Iterable[str], manifest: Path | None = None,
                settings: dict | None = None, **kwargs):
    """An ffcv Loader over a checked .beton; fields not in `keep` are not decoded at all.

    Raises BetonError naming the file if it is missing, truncated or (given manifest/settings) stale.
    """
    from ffcv.loader import Loader
    from ffcv.reader import Reader

    beton = Path(beton)
    check_beton(beton, manifest=manifest, settings=settings)
    fields = Reader(str(beton)).field_names
    missing = [k for k in keep if k not in fields]
    if missing:
        raise BetonError(f"{beton}: has fields {fields}, not the {missing} this loader needs")
    pipelines = {**{name: None for name in fields if name not in keep}, **pipelines}
    return Loader(str(beton), pipelines=pipelines, **kwargs)
