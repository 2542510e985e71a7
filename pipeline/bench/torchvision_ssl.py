"""The reference the FFCV loader is measured against: the same views with torchvision.transforms.v2, per
sample, in DataLoader worker processes over an ImageFolder (PIL decoding).

Same operations and parameters as pipeline.loaders (RandomResizedCrop, flip, colour jitter p 0.8,
grayscale p 0.2, blur with the same kernel size, solarize at 128, ImageNet normalisation): BYOL's pair,
multi-crop's small views (DINO's local recipe) or EMP-SSL's patches, as a `bench.views.ViewLayout` says.
Colour ops run on the PIL image (the usual recipe; measured slightly faster per sample than on uint8 tensors).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from ..loaders.augment import BYOL_VIEWS, IMAGENET_MEAN, IMAGENET_STD, LOCAL_VIEW, PATCH_VIEW, ViewSpec
from ..loaders.colour import blur_kernel_size
from .views import ViewLayout


def view_transform(spec: ViewSpec, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                   blur_kernel: int | None = None) -> v2.Compose:
    k = blur_kernel or blur_kernel_size(size)
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=tuple(scale), ratio=tuple(ratio), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(spec.brightness, spec.contrast, spec.saturation, spec.hue)], p=spec.jitter_p),
        v2.RandomGrayscale(p=spec.grayscale_p),
        v2.RandomApply([v2.GaussianBlur(k, sigma=spec.blur_sigma)], p=spec.blur_p),
        v2.RandomSolarize(threshold=128, p=spec.solarize_p),
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class Views:
    """Every view of one image, as a list of tensors in the FFCV loader's order."""

    def __init__(self, layout: ViewLayout):
        if layout.patches:
            self.transforms = [view_transform(PATCH_VIEW, layout.size, layout.scale, (1.0, 1.0))] * layout.patches
        else:
            pair = [view_transform(spec, layout.size, layout.scale) for spec in BYOL_VIEWS]
            small = ([view_transform(LOCAL_VIEW, layout.local_size, layout.local_scale)] * layout.local_views
                     if layout.local_views else [])
            self.transforms = pair + small

    def __call__(self, image):
        return [t(image) for t in self.transforms]


def torchvision_loader(folder: Path, *, size: int, batch_size: int, num_workers: int, seed: int = 0,
                       scale=(0.08, 1.0), pin_memory: bool = False,
                       layout: ViewLayout | None = None) -> torch.utils.data.DataLoader:
    """Batches ([view tensors], label); two views of `size` at `scale` unless `layout` says otherwise."""
    dataset = ImageFolder(str(folder), transform=Views(layout or ViewLayout(size, tuple(scale))))
    # spawn: clean workers that do not inherit the benchmark process (ffcv's numba state, loader buffers).
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                       num_workers=num_workers, persistent_workers=num_workers > 0,
                                       pin_memory=pin_memory,
                                       multiprocessing_context="spawn" if num_workers > 0 else None,
                                       generator=torch.Generator().manual_seed(seed))
