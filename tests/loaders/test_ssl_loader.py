"""The two-view SSL loader over a real (tiny) .beton: shapes, seeding, sharding, devices."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline.loaders.ssl import SSLLoader


def _epochs(loader, n=2):
    return [[tuple(t.clone() for t in batch) for batch in loader] for _ in range(n)]


@pytest.fixture(scope="module")
def seeded(tiny):
    """Two epochs from each of two loaders with seed 0 and one with seed 1 (each loader compiles once)."""
    make = lambda seed: SSLLoader(tiny.train, batch_size=8, image_size=16, seed=seed, num_workers=2)  # noqa: E731
    first = make(0)
    return first, _epochs(first), _epochs(make(0)), _epochs(make(1))


def test_batches_have_two_float_views_and_labels(seeded):
    loader, epochs, _, _ = seeded
    assert len(loader) == 4 and len(epochs[0]) == 4  # 32 images, batch 8, drop_last
    for v1, v2, label in epochs[0]:
        assert v1.shape == v2.shape == (8, 3, 16, 16) and v1.dtype == v2.dtype == torch.float32
        assert label.shape == (8,) and label.dtype == torch.int64 and set(label.tolist()) <= {0, 1, 2, 3}
        assert not torch.allclose(v1, v2)
        assert -2.2 < v1.min() and v1.max() < 2.7  # ImageNet-normalised [0, 1] values
    labels = torch.cat([b[2] for b in epochs[0]])
    assert sorted(labels.tolist()) == sorted([c for c in range(4) for _ in range(8)])  # each image once


def test_same_seed_same_batches_and_new_crops_each_epoch(seeded):
    _, a, b, c = seeded
    for ea, eb in zip(a, b):
        for ba, bb in zip(ea, eb):
            assert all(torch.equal(x, y) for x, y in zip(ba, bb))
    assert not torch.equal(a[0][0][0], c[0][0][0])  # another seed, other batches
    assert not torch.equal(a[0][0][0], a[1][0][0])  # another epoch, other order and crops


def test_cpu_threads_are_restored_each_batch(tiny, seeded):
    loader = seeded[0]
    torch.set_num_threads(2)
    next(iter(loader))
    assert torch.get_num_threads() == loader.torch_threads


def test_distributed_needs_a_process_group(tiny):
    with pytest.raises(ValueError, match="init_process_group"):
        SSLLoader(tiny.train, batch_size=8, image_size=16, distributed=True)
    with pytest.raises(ValueError, match="order"):
        SSLLoader(tiny.train, batch_size=8, image_size=16, order="shuffled")


def _rank_main(rank: int, world: int, init_file: str, beton: str, out: dict):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        loader = SSLLoader(beton, batch_size=4, image_size=16, seed=3, num_workers=1, distributed=True)
        order = loader.loader.next_traversal_order()
        n = sum(len(b[0]) for b in loader)
        out[rank] = (loader.rank, loader.world_size, sorted(int(i) for i in order), n)
    finally:
        dist.destroy_process_group()


def test_ranks_get_disjoint_shards(tiny, tmp_path):
    world = 2
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank_main, args=(world, str(tmp_path / "pg"), str(tiny.train), out), nprocs=world)
        res = dict(out)
    assert [res[r][:2] for r in range(world)] == [(0, 2), (1, 2)]
    shards = [set(res[r][2]) for r in range(world)]
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(32))
    assert res[0][3] == res[1][3] == 16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches(tiny):
    loader = SSLLoader(tiny.train, batch_size=8, image_size=16, seed=0, device="cuda")
    v1, v2, label = next(iter(loader))
    assert v1.is_cuda and v2.is_cuda and label.is_cuda and v1.shape == (8, 3, 16, 16)


def test_cuda_unavailable_is_a_clear_error(tiny):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        SSLLoader(tiny.train, batch_size=8, image_size=16, device="cuda")
    assert os.path.exists(tiny.train)


def test_portrait_views_for_the_reid_adaptation(tiny):
    # (height, width) views, as reid_eval's SYSU-30k adaptation asks for; 6 portrait images, batch 3.
    loader = SSLLoader(tiny.query, batch_size=3, image_size=(16, 8), seed=0, num_workers=1)
    batches = [tuple(t.clone() for t in b) for b in loader]
    assert len(batches) == 2
    for v1, v2, label in batches:
        assert v1.shape == v2.shape == (3, 3, 16, 8) and label.shape == (3,)
        assert not torch.allclose(v1, v2)


def test_multi_crop_adds_small_views_and_leaves_the_two_views_as_they_were(tiny, seeded):
    # Local views come from the same decode: the two views must be bit-identical to a two-view loader's
    # with the same seed (so multi-crop changes nothing but what it adds), the small ones at their size.
    multi = SSLLoader(tiny.train, batch_size=8, image_size=16, seed=0, num_workers=2, local_views=3, local_size=8,
                      local_crop_scale=(0.05, 0.3))
    two_view = seeded[1][0]  # epoch 0 of the seed-0 two-view loader
    batches = [(b.view1.clone(), b.view2.clone(), b.label.clone(), tuple(v.clone() for v in b.local)) for b in multi]
    assert len(batches) == len(two_view) == 4
    for (v1, v2, label, local), (w1, w2, wl) in zip(batches, two_view):
        assert torch.equal(v1, w1) and torch.equal(v2, w2) and torch.equal(label, wl)
        assert len(local) == 3 and all(v.shape == (8, 3, 8, 8) and v.dtype == torch.float32 for v in local)
        assert not torch.allclose(local[0], local[1]) and not torch.allclose(local[1], local[2])
    # The local views' colour augmentation has its own generators, saved and replayed like the two views'.
    state = multi.augment_state()
    assert sorted(state) == ["local0", "local1", "local2", "view1", "view2"]
    multi.set_epoch(0)
    first = next(iter(multi)).local[0].clone()
    multi.set_augment_state(state)
    multi.set_epoch(0)
    assert torch.equal(next(iter(multi)).local[0], first)
    with pytest.raises(ValueError, match="local0"):
        multi.set_augment_state({"view1": state["view1"], "view2": state["view2"]})
    with pytest.raises(ValueError, match="local_size"):
        SSLLoader(tiny.train, batch_size=8, image_size=16, local_views=2)


def test_emp_ssl_patches_are_equal_square_crops_of_one_scale_each_augmented_by_the_authors_recipe(tiny):
    from pipeline.loaders.augment import PATCH_VIEW
    from pipeline.loaders.decoders import CropGroup, random_crop

    loader = SSLLoader(tiny.train, batch_size=8, image_size=16, seed=0, num_workers=2, patches=4, patch_scale=0.25)
    assert loader.groups == [CropGroup(4, 16, 16, (0.25, 0.25), (1.0, 1.0))]
    assert random_crop(64, 48, 0.25, 0.25, 0.0, 0.0, 12345)[2:] == (28, 28)  # round(sqrt(0.25 * 64 * 48))
    augments = [loader.augment.view1, loader.augment.view2, *loader.augment.local]
    assert len(augments) == 4 and all(a.spec == PATCH_VIEW for a in augments)
    batch = next(iter(loader))
    patches = (batch.view1, batch.view2, *batch.local)
    assert len(patches) == 4 and all(p.shape == (8, 3, 16, 16) for p in patches)
    assert not torch.allclose(patches[2], patches[3])
    with pytest.raises(ValueError, match=r"patches = 4, local_views = 2: EMP-SSL's patches .* replace multi-crop"):
        SSLLoader(tiny.train, batch_size=8, image_size=16, patches=4, local_views=2, local_size=8)
