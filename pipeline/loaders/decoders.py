"""ffcv decoders whose randomness is reproducible: random-resized crops (several views, with flips) and resize.

ffcv's own RandomResizedCrop and flip draw from numba's per-thread RNG, which cannot be seeded from
Python and is consumed by whichever thread handles a sample, so "same seed, same batches" is impossible
with them. Here every random number is a counter-based hash (splitmix64) of (seed, the batch's sample
ids, the sample id, the view, a counter): the same whatever thread runs it. The batch's ids enter the key
so that an image gets new crops every epoch (random orders are seeded by ffcv with seed + epoch).

`RandomCropsDecoder` decodes each JPEG once and cuts `views` crops from it, output [B, views, H, W, 3]
uint8; crop sampling follows torchvision's RandomResizedCrop (10 tries, then a centre crop), the resize
is ffcv's (OpenCV INTER_AREA; BYOL used bicubic).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Tuple

import numpy as np
from ffcv.fields.rgb_image import ResizedCropRGBImageDecoder, SimpleRGBImageDecoder
from ffcv.libffcv import imdecode, resize_crop
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.state import State
from numba import njit

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


class RandomCropsDecoder(SimpleRGBImageDecoder):
    """Decode an RGBImageField once, output `views` random-resized crops (each flipped with flip_p).

    output_size: (height, width); scale and ratio as torchvision's RandomResizedCrop. Subclasses ffcv's
    SimpleRGBImageDecoder only so that ffcv recognises it as the field's decoder (and not a transform).
    """

    def __init__(self, output_size: tuple[int, int], views: int = 2, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 flip_p: float = 0.5, seed: int = 0):
        super().__init__()
        if views < 1:
            raise ValueError(f"views = {views}: expected at least 1")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale = {scale}: expected 0 < low <= high <= 1")
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.views, self.scale, self.ratio = views, tuple(scale), tuple(ratio)
        self.flip_p, self.seed = float(flip_p), int(seed) & 0xFFFFFFFFFFFFFFFF

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, AllocationQuery]:
        max_w = np.uint64(self.metadata["width"].max())
        max_h = np.uint64(self.metadata["height"].max())
        shape = (self.views, *self.output_size, 3)
        u8 = np.dtype("<u1")
        return (replace(previous_state, jit_mode=True, shape=shape, dtype=u8),
                (AllocationQuery(shape, u8), AllocationQuery((max_h * max_w * np.uint64(3),), u8)))

    def generate_code(self) -> Callable:
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        imdecode_c = Compiler.compile(imdecode)
        resize_crop_c = Compiler.compile(resize_crop)
        views, seed, flip_p = self.views, np.uint64(self.seed), self.flip_p
        s_lo, s_hi = float(self.scale[0]), float(self.scale[1])
        r_lo, r_hi = float(np.log(self.ratio[0])), float(np.log(self.ratio[1]))

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
                for v in range(views):
                    key = view_key(bkey, source_ix, v)
                    top, left, h, w = random_crop(height, width, s_lo, s_hi, r_lo, r_hi, key)
                    out = destination[dst_ix, v]
                    resize_crop_c(image, top, top + h, left, left + w, out)
                    if uniform(key, 64) < flip_p:
                        flip_in_place(out)
            return destination[: len(batch_indices)]

        decode.is_parallel = True
        return decode


def _whole_image(height, width, scale, ratio):
    return np.uint32(0), np.uint32(0), height, width


class ResizeRGBImageDecoder(ResizedCropRGBImageDecoder):
    """Resize the whole image to output_size = (height, width), aspect ratio not kept (SYSU-30k's 256 x 128)."""

    def __init__(self, output_size: tuple[int, int]):
        super().__init__((int(output_size[0]), int(output_size[1])))
        self.scale, self.ratio = (1.0, 1.0), (1.0, 1.0)  # unused, but ffcv's generate_code passes them

    @property
    def get_crop_generator(self):
        return _whole_image
