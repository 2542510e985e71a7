"""Evaluation loaders: deterministic decode + resize on the loader threads, normalisation in torch.

    ClassificationEvalLoader  centre crop of side ratio * shorter side, resized to image_size: the same as
                              Resize(image_size / ratio) + CenterCrop(image_size) (ImageNet: 256 -> 224)
    ReidEvalLoader            the whole image resized to (height, width) with PIL bicubic, SYSU-30k's 256 x 128
    LinearTrainLoader         one random-resized crop + flip per image (linear-probe training), seeded
    PatchBagEvalLoader        n fixed-scale square patches + flips per image (EMP-SSL's bag-of-patches
                              evaluation), seeded: the same patches on every pass

Each yields (images, label, *other int fields): images float32 [B, 3, H, W] ([B, n, 3, H, W] for the patch
bags), ImageNet-normalised, on `device`; int fields int64 [B]. Order is sequential (except LinearTrainLoader)
and nothing is dropped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from .augment import Normalize, to_float
from .decoders import BicubicResizeDecoder, RandomCropsDecoder
from .ffcv_common import check_device, dist_info, int_pipeline, make_loader, order_option, torch_threads_for


class _ImageLoader:
    """An ffcv loader of one image pipeline plus integer fields, normalised on the device."""

    def __init__(self, beton, decoder, ints: tuple[str, ...], *, batch_size: int, device, num_workers: int,
                 os_cache: bool, distributed: bool, order: str, seed: int, drop_last: bool, batches_ahead: int,
                 manifest: Path | None, settings: dict | None, torch_threads: int | None):
        from ffcv.transforms import ToDevice, ToTensor

        self.beton = Path(beton)  # what the data is: the training fingerprint hashes its sidecar
        self.device = check_device(device)
        self.torch_threads = torch_threads_for(self.device, num_workers, torch_threads)
        self.rank, self.world_size = dist_info(distributed)
        self.ints = ints
        image_ops = [decoder, ToTensor()]
        if self.device.type == "cuda":
            image_ops.append(ToDevice(self.device, non_blocking=True))
        pipelines = {"image": image_ops, **{name: int_pipeline(self.device) for name in ints}}
        self.loader = make_loader(beton, pipelines=pipelines, keep=("image", *ints), manifest=manifest,
                                  settings=settings, batch_size=batch_size, num_workers=num_workers,
                                  os_cache=os_cache, distributed=distributed,
                                  order=order_option(order, distributed), seed=seed, drop_last=drop_last,
                                  batches_ahead=batches_ahead)
        self.normalize = Normalize().to(self.device)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch` (its order and crops), e.g. when resuming a run."""
        self.loader.next_epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for images, *ints in self.loader:
            if self.torch_threads:  # see torch_threads_for: ffcv resets it at each epoch start
                torch.set_num_threads(self.torch_threads)
            if images.ndim == 5:  # RandomCropsDecoder's [B, views, H, W, 3]: one view is a plain batch
                images = images.squeeze(1) if images.shape[1] == 1 else images
            x = self.normalize(to_float(images.movedim(-1, -3)))  # channels last -> [..., 3, H, W]
            # ffcv reuses its output buffers for later batches: copy the (tiny) integer fields out.
            yield (x, *(t.view(-1).to(torch.int64, copy=True) for t in ints))


class ClassificationEvalLoader(_ImageLoader):
    def __init__(self, beton, *, image_size: int, crop_ratio: float = 0.875, batch_size: int = 256,
                 device="cpu", num_workers: int = 2, os_cache: bool = True, distributed: bool = False,
                 batches_ahead: int = 3, manifest: Path | None = None, settings: dict | None = None,
                 torch_threads: int | None = None):
        from ffcv.fields.decoders import CenterCropRGBImageDecoder

        if not 0 < crop_ratio <= 1:
            raise ValueError(f"crop_ratio = {crop_ratio}: expected 0 < ratio <= 1")
        super().__init__(beton, CenterCropRGBImageDecoder((image_size, image_size), crop_ratio), ("label",),
                         batch_size=batch_size, device=device, num_workers=num_workers, os_cache=os_cache,
                         distributed=distributed, order="sequential", seed=0, drop_last=False,
                         batches_ahead=batches_ahead, manifest=manifest, settings=settings,
                         torch_threads=torch_threads)


class ReidEvalLoader(_ImageLoader):
    """SYSU-30k query/gallery/train: yields (images, label, camera, is_distractor)."""

    def __init__(self, beton, *, height: int = 256, width: int = 128, batch_size: int = 128, device="cpu",
                 num_workers: int = 2, os_cache: bool = True, distributed: bool = False, batches_ahead: int = 3,
                 manifest: Path | None = None, settings: dict | None = None, torch_threads: int | None = None):
        super().__init__(beton, BicubicResizeDecoder((height, width)), ("label", "camera", "is_distractor"),
                         batch_size=batch_size, device=device, num_workers=num_workers, os_cache=os_cache,
                         distributed=distributed, order="sequential", seed=0, drop_last=False,
                         batches_ahead=batches_ahead, manifest=manifest, settings=settings,
                         torch_threads=torch_threads)


class LinearTrainLoader(_ImageLoader):
    def __init__(self, beton, *, image_size: int, seed: int = 0, batch_size: int = 256, device="cpu",
                 num_workers: int = 2, order: str = "random", os_cache: bool = True, distributed: bool = False,
                 crop_scale: tuple[float, float] = (0.08, 1.0), drop_last: bool = False, batches_ahead: int = 3,
                 manifest: Path | None = None, settings: dict | None = None, torch_threads: int | None = None):
        rank = dist_info(distributed)[0]
        decoder = RandomCropsDecoder((image_size, image_size), views=1, scale=tuple(crop_scale),
                                     seed=seed * 1_000_003 + rank)
        super().__init__(beton, decoder, ("label",), batch_size=batch_size, device=device, num_workers=num_workers,
                         os_cache=os_cache, distributed=distributed, order=order, seed=seed, drop_last=drop_last,
                         batches_ahead=batches_ahead, manifest=manifest, settings=settings,
                         torch_threads=torch_threads)


class PatchBagEvalLoader(_ImageLoader):
    """`patches` square crops of `patch_scale` of the image area per image, each resized to image_size and
    flipped with p = 0.5, as EMP-SSL's training patches without the colour augmentations; yields
    ([B, patches, 3, S, S], label). `evaluation.knn.extract_features` averages a bag's backbone features."""

    def __init__(self, beton, *, image_size: int, patches: int, patch_scale: float, seed: int = 0,
                 batch_size: int = 256, device="cpu", num_workers: int = 2, os_cache: bool = True,
                 distributed: bool = False, batches_ahead: int = 3, manifest: Path | None = None,
                 settings: dict | None = None, torch_threads: int | None = None):
        decoder = RandomCropsDecoder((image_size, image_size), views=patches, scale=(patch_scale, patch_scale),
                                     ratio=(1.0, 1.0), seed=seed * 1_000_003 + 17)
        super().__init__(beton, decoder, ("label",), batch_size=batch_size, device=device, num_workers=num_workers,
                         os_cache=os_cache, distributed=distributed, order="sequential", seed=0, drop_last=False,
                         batches_ahead=batches_ahead, manifest=manifest, settings=settings,
                         torch_threads=torch_threads)
