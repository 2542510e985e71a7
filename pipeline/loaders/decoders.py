"""ffcv decoders whose randomness is reproducible: random-resized crops (several views, with flips) and resize.

ffcv's own RandomResizedCrop and flip draw from numba's per-thread RNG, which cannot be seeded from
Python and is consumed by whichever thread handles a sample, so "same seed, same batches" is impossible
with them. Here every random number is a counter-based hash (splitmix64) of (seed, the batch's sample
ids, the sample id, the view, a counter): the same whatever thread runs it. The batch's ids enter the key
so that an image gets new crops every epoch (random orders are seeded by ffcv with seed + epoch).

`MultiCropDecoder` decodes each JPEG once and cuts every view of several crop groups from it (multi-crop,
EMP-SSL patches), each group at its own size and scale range; `RandomCropsDecoder` is its one-group case
(`views` crops of one size, output [B, views, H, W, 3] uint8). Crop sampling follows torchvision's
RandomResizedCrop (10 tries, then a centre crop), the resize is ffcv's (OpenCV INTER_AREA; BYOL used
bicubic).

`BicubicResizeDecoder` resizes the whole image with PIL's BICUBIC filter (what torchvision's
Resize(..., BICUBIC) does to a PIL image: a = -0.5, widened when downscaling, 8-bit fixed point), the
SYSU-30k evaluation protocol's preprocessing; ffcv's own resize is OpenCV INTER_AREA only.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, NamedTuple, Tuple

import numpy as np
from numba import njit

from ..ffcv_io.quick_import import import_ffcv

import_ffcv()  # before the ffcv imports below: see quick_import
from ffcv.fields.rgb_image import SimpleRGBImageDecoder  # noqa: E402
from ffcv.libffcv import imdecode, resize_crop  # noqa: E402
from ffcv.pipeline.allocation_query import AllocationQuery  # noqa: E402
from ffcv.pipeline.compiler import Compiler  # noqa: E402
from ffcv.pipeline.state import State  # noqa: E402

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)
_JPG = 0  # ffcv IMAGE_MODES['jpg']


@njit(cache=True)
def mix64(z):
    """splitmix64 finaliser: a well-mixed 64-bit hash of z."""
    z = np.uint64(z) + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def uniform(key, counter):
    """The counter-th uniform number in [0, 1) of the stream `key`."""
    return np.float64(mix64(key + np.uint64(counter) * _GOLDEN) >> _S11) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def batch_key(seed, batch_indices):
    key = mix64(np.uint64(seed))
    for ix in batch_indices:
        key = mix64(key ^ np.uint64(ix))
    return key


@njit(cache=True)
def view_key(bkey, sample, view):
    return mix64(mix64(bkey ^ np.uint64(sample)) + np.uint64(view))


@njit(cache=True)
def random_crop(height, width, scale_lo, scale_hi, logr_lo, logr_hi, key):
    """(top, left, h, w) as torchvision's RandomResizedCrop.get_params, from the stream `key`."""
    height, width = np.int64(height), np.int64(width)
    area = np.float64(height * width)
    for attempt in range(10):
        target = area * (scale_lo + (scale_hi - scale_lo) * uniform(key, 4 * attempt))
        aspect = np.exp(logr_lo + (logr_hi - logr_lo) * uniform(key, 4 * attempt + 1))
        w = np.int64(np.round(np.sqrt(target * aspect)))
        h = np.int64(np.round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = np.int64(uniform(key, 4 * attempt + 2) * (height - h + 1))
            left = np.int64(uniform(key, 4 * attempt + 3) * (width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < np.exp(logr_lo):
        w = width
        h = np.int64(np.round(w / np.exp(logr_lo)))
    elif in_ratio > np.exp(logr_hi):
        h = height
        w = np.int64(np.round(h * np.exp(logr_hi)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@njit(cache=True)
def flip_in_place(image):
    """Mirror an [H, W, C] image left-right."""
    w = image.shape[1]
    for r in range(image.shape[0]):
        for c in range(w // 2):
            for k in range(image.shape[2]):
                tmp = image[r, c, k]
                image[r, c, k] = image[r, w - 1 - c, k]
                image[r, w - 1 - c, k] = tmp


class CropGroup(NamedTuple):
    """`views` random-resized crops of one size: (height, width) output, scale and ratio as torchvision's
    RandomResizedCrop (ratio is width / height of the crop before it is resized)."""
    views: int
    height: int
    width: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    @property
    def view_bytes(self) -> int:
        return self.height * self.width * 3


def check_groups(groups) -> tuple[CropGroup, ...]:
    """The groups as CropGroups, or a ValueError that names the bad group and value."""
    groups = tuple(CropGroup(*g) for g in groups)
    if not groups:
        raise ValueError("expected at least one crop group")
    for i, g in enumerate(groups):
        if g.views < 1:
            raise ValueError(f"crop group {i}: views = {g.views}, expected at least 1")
        if min(g.height, g.width) < 1:
            raise ValueError(f"crop group {i}: size {g.height} x {g.width}, expected positive sides")
        if not 0 < g.scale[0] <= g.scale[1] <= 1:
            raise ValueError(f"crop group {i}: scale = {tuple(g.scale)}, expected 0 < low <= high <= 1")
        if not 0 < g.ratio[0] <= g.ratio[1]:
            raise ValueError(f"crop group {i}: ratio = {tuple(g.ratio)}, expected 0 < low <= high")
    return groups


class MultiCropDecoder(SimpleRGBImageDecoder):
    """Decode an RGBImageField once and cut every view of every crop group from it (multi-crop: e.g. 2 views
    at 32 px with scale (0.25, 1) and 6 at 16 px with scale (0.05, 0.25); EMP-SSL: n equal patches).

    Output [B, total_bytes] uint8: for each group in order, its views one after the other, each an
    [height, width, 3] image (`split_views` cuts a batch back into per-view tensors). View v (counted over
    all groups) draws from the stream view_key(batch, sample, v), so the first group's crops are those of a
    `RandomCropsDecoder` with the same seed, whatever groups follow. Subclasses ffcv's SimpleRGBImageDecoder
    only so that ffcv recognises it as the field's decoder (and not a transform).
    """

    def __init__(self, groups, flip_p: float = 0.5, seed: int = 0):
        super().__init__()
        self.groups = check_groups(groups)
        self.flip_p, self.seed = float(flip_p), int(seed) & 0xFFFFFFFFFFFFFFFF

    def output_shape(self) -> tuple[int, ...]:
        return (sum(g.views * g.view_bytes for g in self.groups),)

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, AllocationQuery]:
        max_w = np.uint64(self.metadata["width"].max())
        max_h = np.uint64(self.metadata["height"].max())
        shape = self.output_shape()
        u8 = np.dtype("<u1")
        return (replace(previous_state, jit_mode=True, shape=shape, dtype=u8),
                (AllocationQuery(shape, u8), AllocationQuery((max_h * max_w * np.uint64(3),), u8)))

    def generate_code(self) -> Callable:
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        imdecode_c = Compiler.compile(imdecode)
        resize_crop_c = Compiler.compile(resize_crop)
        seed, flip_p, groups = np.uint64(self.seed), self.flip_p, self.groups
        n_groups = len(groups)
        counts = np.array([g.views for g in groups], np.int64)
        heights = np.array([g.height for g in groups], np.int64)
        widths = np.array([g.width for g in groups], np.int64)
        offsets = np.cumsum([0] + [g.views * g.view_bytes for g in groups])[:-1].astype(np.int64)
        s_lo = np.array([g.scale[0] for g in groups], np.float64)
        s_hi = np.array([g.scale[1] for g in groups], np.float64)
        r_lo = np.log(np.array([g.ratio[0] for g in groups], np.float64))
        r_hi = np.log(np.array([g.ratio[1] for g in groups], np.float64))

        def decode(batch_indices, my_storage, metadata, storage_state):
            destination, temp_storage = my_storage
            bkey = batch_key(seed, batch_indices)
            for dst_ix in my_range(len(batch_indices)):
                source_ix = batch_indices[dst_ix]
                field = metadata[source_ix]
                image_data = mem_read(field["data_ptr"], storage_state)
                height, width = np.uint32(field["height"]), np.uint32(field["width"])
                if field["mode"] == _JPG:
                    temp = temp_storage[dst_ix]
                    imdecode_c(image_data, temp, height, width, height, width, 0, 0, 1, 1, False, False)
                    image = temp.reshape(-1)[: 3 * height * width].reshape(height, width, 3)
                else:
                    image = image_data.reshape(height, width, 3)
                flat = destination[dst_ix].reshape(-1)
                v = 0
                for g in range(n_groups):
                    size = heights[g] * widths[g] * 3
                    for i in range(counts[g]):
                        key = view_key(bkey, source_ix, v)
                        top, left, h, w = random_crop(height, width, s_lo[g], s_hi[g], r_lo[g], r_hi[g], key)
                        start = offsets[g] + i * size
                        out = flat[start: start + size].reshape(heights[g], widths[g], 3)
                        resize_crop_c(image, top, top + h, left, left + w, out)
                        if uniform(key, 64) < flip_p:
                            flip_in_place(out)
                        v += 1
            return destination[: len(batch_indices)]

        decode.is_parallel = True
        return decode


def split_views(batch, groups) -> list:
    """A MultiCropDecoder batch [B, total_bytes] -> one [B, height, width, 3] array or tensor per view,
    in the decoder's order (views that share nothing with the batch buffer only by slicing: no copy)."""
    out, start = [], 0
    for g in groups:
        for _ in range(g.views):
            out.append(batch[:, start: start + g.view_bytes].reshape(-1, g.height, g.width, 3))
            start += g.view_bytes
    return out


class RandomCropsDecoder(MultiCropDecoder):
    """`views` random-resized crops of one size (each flipped with flip_p), output [B, views, H, W, 3]:
    a MultiCropDecoder with a single group, whose buffer has the same layout as the flat one.

    output_size: (height, width); scale and ratio as torchvision's RandomResizedCrop.
    """

    def __init__(self, output_size: tuple[int, int], views: int = 2, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 flip_p: float = 0.5, seed: int = 0):
        self.output_size = (int(output_size[0]), int(output_size[1]))
        super().__init__([CropGroup(views, *self.output_size, tuple(scale), tuple(ratio))], flip_p, seed)
        self.views, self.scale, self.ratio = views, tuple(scale), tuple(ratio)

    def output_shape(self) -> tuple[int, ...]:
        return (self.views, *self.output_size, 3)


_PRECISION_BITS = 22  # PIL's fixed-point coefficients for 8-bit images (Resample.c: 32 - 8 - 2)


@njit(cache=True)
def _bicubic(x):
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


@njit(cache=True)
def bicubic_coefficients(in_size, out_size):
    """(first tap, tap count, fixed-point weights [out_size, taps]) per output pixel, as PIL computes them."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    taps = int(np.ceil(support)) * 2 + 1
    first = np.zeros(out_size, np.int64)
    count = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, taps), np.int64)
    real = np.zeros(taps, np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        total = 0.0
        for x in range(xmax):
            real[x] = _bicubic((x + xmin - center + 0.5) / filterscale)
            total += real[x]
        for x in range(xmax):
            w = real[x] / total if total != 0.0 else 0.0
            # C's (int) truncates towards zero: PIL rounds half away from zero this way.
            weights[xx, x] = int(w * (1 << _PRECISION_BITS) + (0.5 if w >= 0 else -0.5))
        first[xx], count[xx] = xmin, xmax
    return first, count, weights


@njit(cache=True)
def _clip8(acc):
    v = acc >> _PRECISION_BITS
    return 0 if v < 0 else (255 if v > 255 else v)


@njit(cache=True)
def _resample_rows(src, dst, first, count, weights):
    """One 8-bit pass along axis 1: dst[r, x] = clip8(sum_t weights[x, t] * src[r, first[x] + t])."""
    half = np.int64(1) << (_PRECISION_BITS - 1)
    for r in range(dst.shape[0]):
        for xx in range(dst.shape[1]):
            for c in range(3):
                acc = half
                for t in range(count[xx]):
                    acc += np.int64(src[r, first[xx] + t, c]) * weights[xx, t]
                dst[r, xx, c] = _clip8(acc)


@njit(cache=True)
def bicubic_resize(image, out, temp):
    """Resize an [h, w, 3] uint8 image into out [H, W, 3] with PIL's BICUBIC: a horizontal then a vertical
    8-bit pass through temp (a flat uint8 buffer of at least h * W * 3 bytes), Pillow's classic order.
    Pillow 13 sometimes runs the vertical pass first when both sides change and the height shrinks (its rule
    is undocumented); the 8-bit rounding between passes then differs by a few levels on some pixels."""
    h, w = image.shape[0], image.shape[1]
    oh, ow = out.shape[0], out.shape[1]
    between = temp[: h * ow * 3].reshape(h, ow, 3)
    first, count, weights = bicubic_coefficients(w, ow)
    _resample_rows(image, between, first, count, weights)
    first, count, weights = bicubic_coefficients(h, oh)
    _resample_rows(between.transpose(1, 0, 2), out.transpose(1, 0, 2), first, count, weights)  # axis 0


class BicubicResizeDecoder(SimpleRGBImageDecoder):
    """Decode an RGBImageField and resize the whole image to output_size = (height, width), aspect ratio
    not kept, with PIL's BICUBIC filter (SYSU-30k's Resize((256, 128), bicubic)). Output [B, H, W, 3] uint8."""

    def __init__(self, output_size: tuple[int, int]):
        super().__init__()
        if min(output_size) < 1:
            raise ValueError(f"output_size = {output_size}: expected positive (height, width)")
        self.output_size = (int(output_size[0]), int(output_size[1]))

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, AllocationQuery]:
        max_w = np.uint64(self.metadata["width"].max())
        max_h = np.uint64(self.metadata["height"].max())
        shape = (*self.output_size, 3)
        u8 = np.dtype("<u1")
        return (replace(previous_state, jit_mode=True, shape=shape, dtype=u8),
                (AllocationQuery(shape, u8), AllocationQuery((max_h * max_w * np.uint64(3),), u8),
                 AllocationQuery((max_h * np.uint64(self.output_size[1]) * np.uint64(3),), u8)))

    def generate_code(self) -> Callable:
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        imdecode_c = Compiler.compile(imdecode)

        def decode(batch_indices, my_storage, metadata, storage_state):
            destination, temp_storage, pass_storage = my_storage
            for dst_ix in my_range(len(batch_indices)):
                field = metadata[batch_indices[dst_ix]]
                image_data = mem_read(field["data_ptr"], storage_state)
                height, width = np.uint32(field["height"]), np.uint32(field["width"])
                if field["mode"] == _JPG:
                    temp = temp_storage[dst_ix]
                    imdecode_c(image_data, temp, height, width, height, width, 0, 0, 1, 1, False, False)
                    image = temp.reshape(-1)[: 3 * height * width].reshape(height, width, 3)
                else:
                    image = image_data.reshape(height, width, 3)
                bicubic_resize(image, destination[dst_ix], pass_storage[dst_ix])
            return destination[: len(batch_indices)]

        decode.is_parallel = True
        return decode
