"""The self-supervised loader: a .beton -> (view 1, view 2, label[, local views]) batches, augmented on the device.

On the loader's CPU threads (numba): decode each image once, cut two random-resized crops and, for
multi-crop, `local_views` smaller ones at their own size and scale range, flip each with p = 0.5
(`MultiCropDecoder`, reproducible for a seed). On the device, in torch: uint8 -> float, BYOL's colour
jitter / grayscale / blur / solarize per view (`TwoViewAugment`, local views as DINO's: blur p = 0.5),
ImageNet normalisation.

    loader = SSLLoader("data/beton/classification_train.beton", batch_size=128, image_size=32, seed=0)
    for view1, view2, label in loader: ...   # float32 [B, 3, S, S] each, label int64 [B]
    loader = SSLLoader(..., local_views=4, local_size=16)
    for view1, view2, label, local in loader: ...   # local: 4 x float32 [B, 3, 16, 16]
    loader = SSLLoader(..., patches=20, patch_scale=0.25)   # EMP-SSL: 20 equal patches per image
    for view1, view2, label, local in loader: ...   # patches 1, 2 and 18 more, all [B, 3, S, S]

EMP-SSL's patches are square crops of exactly `patch_scale` of the image area at image_size, each augmented
with the authors' recipe (`PATCH_VIEW`): they are delivered as view 1, view 2 and `patches - 2` more views so
that every method sees one batch layout.

Under DDP (`distributed=True`, after `torch.distributed.init_process_group`) ffcv gives each rank its
own shard of every epoch's permutation (DistributedSampler semantics); `rank` and `world_size` say which.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple

import torch

from .augment import PATCH_VIEW, TwoViewAugment
from .decoders import CropGroup, MultiCropDecoder, split_views
from .ffcv_common import check_device, dist_info, int_pipeline, make_loader, order_option, torch_threads_for


class SSLBatch(NamedTuple):
    view1: torch.Tensor  # float32 [B, 3, S, S], normalised
    view2: torch.Tensor
    label: torch.Tensor  # int64 [B] (never used by the self-supervised loss; kept for kNN monitoring)


class MultiCropBatch(NamedTuple):
    """An SSLBatch and multi-crop's small views (what the loader yields when it has local views)."""
    view1: torch.Tensor
    view2: torch.Tensor
    label: torch.Tensor
    local: tuple[torch.Tensor, ...]  # float32 [B, 3, s, s] each


class SSLLoader:
    """Iterate two augmented views of every image of a .beton (see the module docstring).

    num_workers: the loader's decoding threads. torch_threads: torch's CPU threads while iterating on the
    CPU (default: the cores the decoder leaves free, at least one; see torch_threads_for); it also applies
    to whatever the caller computes between batches. drop_last (default True): every batch has the full
    batch_size, which the rank-k negatives of the loss need. manifest / settings: when given, a .beton
    written from another manifest version or with other convert parameters is refused (BetonError).
    image_size: a side (square views) or a (height, width) pair; for a non-square output the crops' aspect
    range is the output's times torchvision's (3/4, 4/3), so non-square views are distorted by the same
    factors as square ones (person crops stay tall instead of being squashed into the output's shape).
    """

    def __init__(self, beton: str | Path, *, batch_size: int, image_size: int | tuple[int, int], seed: int = 0,
                 device: str | torch.device = "cpu", num_workers: int = 2, order: str = "random",
                 os_cache: bool = True, distributed: bool = False, drop_last: bool = True,
                 crop_scale: tuple[float, float] = (0.08, 1.0), batches_ahead: int = 3,
                 torch_threads: int | None = None, blur_kernel: int | None = None,
                 local_views: int = 0, local_size: int | tuple[int, int] | None = None,
                 local_crop_scale: tuple[float, float] = (0.05, 0.25), patches: int = 0, patch_scale: float = 0.25,
                 manifest: Path | None = None, settings: dict | None = None):
        self.beton = Path(beton)  # what the data is: the training fingerprint hashes its sidecar
        self.device = check_device(device)
        self.rank, self.world_size = dist_info(distributed)
        self.batch_size, self.image_size = batch_size, image_size
        self.torch_threads = torch_threads_for(self.device, num_workers, torch_threads)
        # The crop seed mixes in the rank: shards never overlap, but be explicit about independence.
        height, width = _side_pair(image_size)
        aspect = width / height  # 1 for square views: torchvision's default ratio range, as before
        ratio = (3 / 4 * aspect, 4 / 3 * aspect)
        if local_views < 0:
            raise ValueError(f"local_views = {local_views}: expected 0 (no multi-crop) or more")
        views = {"blur_kernel": blur_kernel, "local_views": local_views}
        if patches:
            if patches < 2 or local_views:
                raise ValueError(f"patches = {patches}, local_views = {local_views}: EMP-SSL's patches are at least 2"
                                 " and replace multi-crop (local_views = 0)")
            self.groups = [CropGroup(patches, height, width, (patch_scale, patch_scale), (aspect, aspect))]
            views = {"blur_kernel": blur_kernel, "views": (PATCH_VIEW, PATCH_VIEW), "local_views": patches - 2,
                     "local": PATCH_VIEW}
        else:
            self.groups = [CropGroup(2, height, width, tuple(crop_scale), ratio)]
        if local_views:
            if local_size is None:
                raise ValueError(f"local_views = {local_views} needs local_size (the small views' side)")
            self.groups.append(CropGroup(local_views, *_side_pair(local_size), tuple(local_crop_scale), ratio))
        decoder = MultiCropDecoder(self.groups, seed=seed * 1_000_003 + self.rank)
        self.loader = make_loader(beton, batch_size=batch_size, num_workers=num_workers,
                                  order=order_option(order, distributed), os_cache=os_cache,
                                  distributed=distributed, seed=seed, drop_last=drop_last, batches_ahead=batches_ahead,
                                  pipelines={"image": [decoder, *self._to_device()],
                                             "label": int_pipeline(self.device)},
                                  keep=("image", "label"), manifest=manifest, settings=settings)
        self.augment = TwoViewAugment(seed=seed, rank=self.rank, **views).to(self.device)

    def _to_device(self) -> list:
        from ffcv.transforms import ToDevice, ToTensor

        ops = [ToTensor()]
        if self.device.type == "cuda":
            ops.append(ToDevice(self.device, non_blocking=True))
        return ops

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch` (its order and crops), e.g. when resuming a run."""
        self.loader.next_epoch = int(epoch)

    def augment_state(self) -> dict[str, torch.Tensor]:
        """The colour-augmentation generators' states (for checkpoints: a resumed run replays them)."""
        return self.augment.generator_states()

    def set_augment_state(self, state: dict[str, torch.Tensor]) -> None:
        self.augment.set_generator_states(state)

    def __iter__(self) -> Iterator[SSLBatch]:
        for crops, label in self.loader:
            if self.torch_threads:  # see torch_threads_for: ffcv resets it at each epoch start
                torch.set_num_threads(self.torch_threads)
            # crops: uint8 [B, bytes] from the decoder -> per view [B, H, W, 3] (channels last) -> [B, 3, H, W]
            views = [v.permute(0, 3, 1, 2) for v in split_views(crops, self.groups)]
            view1, view2, *local = self.augment(*views)
            # ffcv reuses its output buffers for later batches: copy the labels out.
            label = label.view(-1).to(torch.int64, copy=True)
            yield MultiCropBatch(view1, view2, label, tuple(local)) if local else SSLBatch(view1, view2, label)


def _side_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else tuple(map(int, size))
