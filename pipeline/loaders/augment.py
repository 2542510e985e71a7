"""The BYOL colour/blur/solarize augmentations as a batched torch module with per-sample random parameters.

Upstream ffcv has no grayscale, blur or solarize, and its colour ops run on the CPU; this module runs
on whatever device the batch is on, after the loader (crop and flip happen in the loader's decoder).
Every random parameter is drawn per sample from the module's own seeded `torch.Generator` (on the CPU,
so CPU and CUDA runs see the same parameters), and `forward(x, return_applied=True)` reports what was
applied to each sample, which is how the tests check the probabilities.

BYOL (docs/method.md section 3), both views: colour jitter (brightness 0.4, contrast 0.4, saturation 0.2,
hue 0.1, in a random order per sample) with p = 0.8, grayscale p = 0.2, Gaussian blur sigma in
[0.1, 2.0]; view 1: blur p = 1.0, solarize p = 0; view 2: blur p = 0.1, solarize p = 0.2 (threshold 128).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import nn

from . import colour

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CPU_CHUNK_BYTES = 8 << 20  # slice size for CPU passes: measured best at 224 px on a 2-core machine


@dataclass(frozen=True)
class ViewSpec:
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5  # BYOL's 128 of 255 (uint8 values >= 128 are exactly those >= 0.5)

    def __post_init__(self):
        for name in ("jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} = {getattr(self, name)}: expected a probability in [0, 1]")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue = {self.hue}: expected 0 <= hue <= 0.5")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma = {self.blur_sigma}: expected 0 < low <= high")


BYOL_VIEWS = (ViewSpec(blur_p=1.0, solarize_p=0.0), ViewSpec(blur_p=0.1, solarize_p=0.2))
LOCAL_VIEW = ViewSpec(blur_p=0.5, solarize_p=0.0)  # multi-crop's small views, as DINO's local crops
# EMP-SSL's patches (the authors' CIFAR recipe): jitter (0.4, 0.4, 0.4, 0.2) p 0.8, grayscale 0.2, blur 0.1,
# solarize 0.1.
PATCH_VIEW = ViewSpec(saturation=0.4, hue=0.2, blur_p=0.1, solarize_p=0.1)

# Jitter operations by index: the `order` and `factors` columns of Applied use this numbering.
JITTER_OPS: tuple[Callable, ...] = (colour.brightness, colour.contrast, colour.saturation, colour.hue)


class Applied(NamedTuple):
    """What a forward pass did to each of its B samples (CPU tensors)."""

    jitter: torch.Tensor     # [B] bool
    order: torch.Tensor      # [B, 4] long, jitter operations in the order applied (see JITTER_OPS)
    factors: torch.Tensor    # [B, 4] brightness, contrast, saturation factors and hue shift
    grayscale: torch.Tensor  # [B] bool
    blur: torch.Tensor       # [B] bool
    sigma: torch.Tensor      # [B] blur sigma (drawn for every sample, used where blur is True)
    solarize: torch.Tensor   # [B] bool


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float input is assumed to be in [0, 1] already (copied)."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float().clone()


class Normalize(nn.Module):
    """(x - mean) / std per channel, in torch (ffcv's NormalizeImage hangs the Loader on CPU)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sub(x, self.mean.to(x.device)).div_(self.std.to(x.device))


class ViewAugment(nn.Module):
    """One view's colour jitter, grayscale, blur and solarize on a batch [B, 3, H, W] (uint8 or float in [0, 1]).

    Returns float32 in [0, 1] on the input's device (not normalised). blur_kernel: odd kernel side,
    default 10% of the image side as in BYOL (23 px at 224).
    """

    def __init__(self, spec: ViewSpec = ViewSpec(), seed: int = 0, blur_kernel: int | None = None):
        super().__init__()
        if blur_kernel is not None and (blur_kernel < 1 or blur_kernel % 2 == 0):
            raise ValueError(f"blur_kernel = {blur_kernel}: expected an odd positive size")
        self.spec, self.blur_kernel = spec, blur_kernel
        self.generator = torch.Generator().manual_seed(int(seed))

    def sample(self, n: int) -> Applied:
        """Draw every random parameter for n samples; the same number of draws whatever the probabilities."""
        s, g = self.spec, self.generator
        u = torch.rand(n, 4, generator=g)
        factors = torch.rand(n, 4, generator=g)
        lo = torch.tensor([max(0.0, 1 - s.brightness), max(0.0, 1 - s.contrast), max(0.0, 1 - s.saturation), -s.hue])
        hi = torch.tensor([1 + s.brightness, 1 + s.contrast, 1 + s.saturation, s.hue])
        order = torch.rand(n, 4, generator=g).argsort(dim=1)
        sigma = s.blur_sigma[0] + (s.blur_sigma[1] - s.blur_sigma[0]) * torch.rand(n, generator=g)
        return Applied(jitter=u[:, 0] < s.jitter_p, order=order, factors=lo + (hi - lo) * factors,
                       grayscale=u[:, 1] < s.grayscale_p, blur=u[:, 2] < s.blur_p, sigma=sigma,
                       solarize=u[:, 3] < s.solarize_p)

    def forward(self, x: torch.Tensor, return_applied: bool = False):
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a batch [B, 3, H, W], got shape {tuple(x.shape)}")
        a = self.sample(x.shape[0])
        x = to_float(x).contiguous()
        k = self.blur_kernel or colour.blur_kernel_size(max(x.shape[-2:]))
        # On the CPU the ops are memory-bound: run them on slices that stay in cache (CPU_CHUNK_BYTES),
        # ~1.4x faster at 224 px than whole-batch passes. The parameters were drawn for the whole batch
        # above, so the result does not depend on the slicing.
        step = x.shape[0] if x.is_cuda else max(1, CPU_CHUNK_BYTES // (x[0].numel() * x.element_size()))
        out = torch.cat([self._augment(x[i:i + step], _slice(a, i, i + step), k)
                         for i in range(0, x.shape[0], step)]) if step < x.shape[0] else self._augment(x, a, k)
        return (out, a) if return_applied else out

    def _augment(self, x: torch.Tensor, a: Applied, k: int) -> torch.Tensor:
        dev = x.device
        if a.jitter.any():
            idx = a.jitter.nonzero().squeeze(1)
            sub = x.index_select(0, idx.to(dev))
            order, factors = a.order[idx], a.factors[idx].to(dev)
            for pos in range(4):
                for op_ix, op in enumerate(JITTER_OPS):
                    sel = (order[:, pos] == op_ix).nonzero().squeeze(1)
                    if len(sel):
                        sel_d = sel.to(dev)
                        sub.index_copy_(0, sel_d, op(sub.index_select(0, sel_d), factors[sel_d, op_ix]))
            x = x.index_copy(0, idx.to(dev), sub)
        x = _where(x, a.grayscale, lambda t, i: colour.grayscale(t).repeat(1, 3, 1, 1))
        sigma = a.sigma.to(dev)
        x = _where(x, a.blur, lambda t, i: colour.gaussian_blur(t, sigma[i], k))
        return _where(x, a.solarize, lambda t, i: colour.solarize(t, self.spec.solarize_threshold))


def _slice(a: Applied, lo: int, hi: int) -> Applied:
    return Applied(*(t[lo:hi] for t in a))


def _where(x: torch.Tensor, mask: torch.Tensor, fn: Callable) -> torch.Tensor:
    """Apply fn(x[i], i) to the samples where mask is True (the whole batch without indexing if all are)."""
    if bool(mask.all()):
        return fn(x, torch.arange(x.shape[0], device=x.device))
    if not bool(mask.any()):
        return x
    idx = mask.nonzero().squeeze(1).to(x.device)
    return x.index_copy(0, idx, fn(x.index_select(0, idx), idx).contiguous())


class TwoViewAugment(nn.Module):
    """BYOL's asymmetric pair: view 1 and view 2 augmentations, then ImageNet normalisation; with
    `local_views`, as many multi-crop small views, each augmented as `local` (DINO's local crops).

    Seeds of the views are derived from `seed` (and the DDP rank, so ranks draw different streams); every
    view has its own generator, so adding local views leaves the two views' draws unchanged.
    """

    def __init__(self, seed: int = 0, rank: int = 0, views: tuple[ViewSpec, ViewSpec] = BYOL_VIEWS,
                 blur_kernel: int | None = None, normalize: bool = True, local_views: int = 0,
                 local: ViewSpec = LOCAL_VIEW):
        super().__init__()
        base = (int(seed) * 1_000_003 + int(rank) * 7919) & 0x7FFFFFFF
        self.view1 = ViewAugment(views[0], seed=base * 2 + 1, blur_kernel=blur_kernel)
        self.view2 = ViewAugment(views[1], seed=base * 2 + 2, blur_kernel=blur_kernel)
        # Odd multiples of a large prime: streams apart from every (seed, rank)'s view 1 and view 2 seeds.
        self.local = nn.ModuleList(ViewAugment(local, seed=(base * 2 + 1) * 1_000_033 + 2 * i + 3)
                                   for i in range(local_views))
        self.normalize = Normalize() if normalize else nn.Identity()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, *local: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(local) != len(self.local):
            raise ValueError(f"got {len(local)} local view(s), this augmentation has {len(self.local)}")
        out = (self.normalize(self.view1(x1)), self.normalize(self.view2(x2)))
        return out + tuple(self.normalize(aug(x)) for aug, x in zip(self.local, local))

    def generator_states(self) -> dict[str, torch.Tensor]:
        """Every view's generator state by name (view1, view2, local0, ...): checkpoints replay them."""
        states = {"view1": self.view1.generator.get_state(), "view2": self.view2.generator.get_state()}
        states.update({f"local{i}": aug.generator.get_state() for i, aug in enumerate(self.local)})
        return states

    def set_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        want = set(self.generator_states())
        if set(states) != want:
            raise ValueError(f"augmentation state for views {sorted(states)}, this loader has {sorted(want)}")
        self.view1.generator.set_state(states["view1"].cpu())
        self.view2.generator.set_state(states["view2"].cpu())
        for i, aug in enumerate(self.local):
            aug.generator.set_state(states[f"local{i}"].cpu())
