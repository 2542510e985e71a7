"""The reproducible crop sampling of RandomCropsDecoder (the numba helpers, without a loader)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.loaders.decoders import RandomCropsDecoder, batch_key, flip_in_place, random_crop, uniform, view_key


def test_uniform_stream_is_uniform_and_keyed():
    u = np.array([uniform(np.uint64(7), i) for i in range(20000)])
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01 and abs(u.std() - math.sqrt(1 / 12)) < 0.01
    assert uniform(np.uint64(7), 3) == uniform(np.uint64(7), 3) != uniform(np.uint64(8), 3)


def test_keys_depend_on_seed_batch_sample_and_view():
    b = np.arange(10, dtype=np.uint64)
    k = batch_key(np.uint64(0), b)
    assert k == batch_key(np.uint64(0), b.copy())
    assert k != batch_key(np.uint64(1), b) and k != batch_key(np.uint64(0), b[::-1].copy())
    assert len({view_key(k, s, v) for s in range(5) for v in range(2)}) == 10


def test_crops_follow_random_resized_crop():
    h, w, scale, ratio = 60, 80, (0.08, 1.0), (3 / 4, 4 / 3)
    areas, aspects = [], []
    for key in range(3000):
        top, left, ch, cw = random_crop(h, w, scale[0], scale[1], math.log(ratio[0]), math.log(ratio[1]),
                                        np.uint64(key))
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
        areas.append(ch * cw / (h * w))
        aspects.append(cw / ch)
    assert min(areas) >= 0.07 and max(areas) <= 1.0
    assert 0.7 < np.median(aspects) < 1.4 and np.mean(np.array(areas) > 0.5) > 0.2
    # A degenerate range that no crop satisfies falls back to the centred largest crop (torchvision).
    assert random_crop(10, 100, 0.99, 1.0, 0.0, 0.0, np.uint64(1)) == (0, 45, 10, 10)


def test_flip_in_place():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    ref = img[:, ::-1].copy()
    flip_in_place(img)
    assert np.array_equal(img, ref)


def test_decoder_arguments_are_checked():
    with pytest.raises(ValueError, match="views"):
        RandomCropsDecoder((8, 8), views=0)
    with pytest.raises(ValueError, match="scale"):
        RandomCropsDecoder((8, 8), scale=(0.5, 0.2))


def test_crop_groups_are_checked_naming_the_group():
    from pipeline.loaders.decoders import MultiCropDecoder, split_views

    with pytest.raises(ValueError, match="crop group 1: scale"):
        MultiCropDecoder([(2, 32, 32, (0.25, 1.0)), (4, 16, 16, (0.3, 0.2))])
    with pytest.raises(ValueError, match="crop group 0: views = 0"):
        MultiCropDecoder([(0, 32, 32)])
    decoder = MultiCropDecoder([(2, 4, 4), (3, 2, 2)])
    assert decoder.output_shape() == (2 * 48 + 3 * 12,)
    # split_views cuts a flat batch back into views, in order, without copying.
    flat = np.arange(5 * decoder.output_shape()[0]).reshape(5, -1)
    views = split_views(flat, decoder.groups)
    assert [v.shape for v in views] == [(5, 4, 4, 3)] * 2 + [(5, 2, 2, 3)] * 3
    assert views[1][0, 0, 0, 0] == 48 and views[2][0, 0, 0, 0] == 96 and np.shares_memory(views[4], flat)
