"""The two-view self-supervised loader: a .beton -> (view 1, view 2, label) batches, augmented on the device.

On the loader's CPU threads (numba): decode each image once, cut two random-resized crops, flip each
with p = 0.5 (`RandomCropsDecoder`, reproducible for a seed). On the device, in torch: uint8 -> float,
BYOL's colour jitter / grayscale / blur / solarize per view (`TwoViewAugment`), ImageNet normalisation.

    loader = SSLLoader("data/beton/classification_train.beton", batch_size=128, image_size=32, seed=0)
    for view1, view2, label in loader: ...   # float32 [B, 3, S, S] each, label int64 [B]

Under DDP (`distributed=True`, after `torch.distributed.init_process_group`) ffcv gives each rank its
own shard of every epoch's permutation (DistributedSampler semantics); `rank` and `world_size` say which.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple

import torch

from .augment import TwoViewAugment
from .decoders import RandomCropsDecoder
from .ffcv_common import check_device, dist_info, int_pipeline, make_loader, order_option, torch_threads_for


class SSLBatch(NamedTuple):
    view1: torch.Tensor  # float32 [B, 3, S, S], normalised
    view2: torch.Tensor
    label: torch.Tensor  # int64 [B] (never used by the self-supervised loss; kept for kNN monitoring)


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
                 manifest: Path | None = None, settings: dict | None = None):
        self.beton = Path(beton)  # what the data is: the training fingerprint hashes its sidecar
        self.device = check_device(device)
        self.rank, self.world_size = dist_info(distributed)
        self.batch_size, self.image_size = batch_size, image_size
        self.torch_threads = torch_threads_for(self.device, num_workers, torch_threads)
        # The crop seed mixes in the rank: shards never overlap, but be explicit about independence.
        height, width = (image_size, image_size) if isinstance(image_size, int) else map(int, image_size)
        aspect = width / height  # 1 for square views: torchvision's default ratio range, as before
        decoder = RandomCropsDecoder((height, width), views=2, scale=tuple(crop_scale),
                                     ratio=(3 / 4 * aspect, 4 / 3 * aspect), seed=seed * 1_000_003 + self.rank)
        self.loader = make_loader(beton, batch_size=batch_size, num_workers=num_workers,
                                  order=order_option(order, distributed), os_cache=os_cache,
                                  distributed=distributed, seed=seed, drop_last=drop_last, batches_ahead=batches_ahead,
                                  pipelines={"image": [decoder, *self._to_device()],
                                             "label": int_pipeline(self.device)},
                                  keep=("image", "label"), manifest=manifest, settings=settings)
        self.augment = TwoViewAugment(seed=seed, rank=self.rank, blur_kernel=blur_kernel).to(self.device)

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
        return {"view1": self.augment.view1.generator.get_state(), "view2": self.augment.view2.generator.get_state()}

    def set_augment_state(self, state: dict[str, torch.Tensor]) -> None:
        self.augment.view1.generator.set_state(state["view1"].cpu())
        self.augment.view2.generator.set_state(state["view2"].cpu())

    def __iter__(self) -> Iterator[SSLBatch]:
        for crops, label in self.loader:
            if self.torch_threads:  # see torch_threads_for: ffcv resets it at each epoch start
                torch.set_num_threads(self.torch_threads)
            # crops: uint8 [B, 2, S, S, 3] (channels last, from the decoder) -> two [B, 3, S, S] views
            crops = crops.permute(1, 0, 4, 2, 3)
            view1, view2 = self.augment(crops[0], crops[1])
            # ffcv reuses its output buffers for later batches: copy the labels out.
            yield SSLBatch(view1, view2, label.view(-1).to(torch.int64, copy=True))
