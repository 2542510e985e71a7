"""The embedded SYSU-30k generator: layout, naming, meta lists, protocol guarantees and determinism."""
from pathlib import Path

import pytest
from PIL import Image

from pipeline.data.generate_sysu import appearance, generate_sysu
from pipeline.data.readers_sysu import read_sysu

# 2*8 + 50 + 3*4 = 78 images: above run_jobs' threshold, so the worker processes are exercised too.
CFG = dict(query_ids=8, distractors=50, train_bags=3, images_per_bag=4, identities_per_bag=2,
           height=128, width=64, jpeg_quality=90)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("sysu")
    stats = {name: generate_sysu(base / name / "sysu30k", CFG, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    return base, stats


def test_same_seed_same_bytes_other_seed_differs(generated):
    base, _ = generated
    a, b, c = (_files(base / n / "sysu30k") for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith(".jpg")]
    assert all(a[k] != c[k] for k in images)


def test_layout_and_names(generated):
    base, stats = generated
    root = base / "a" / "sysu30k"
    expected = {"meta/train.txt", "meta/query.txt", "meta/gallery.txt"}
    for i in range(1, 9):
        ident = f"{i:07d}"
        expected |= {f"sysu_test_set_all/query/{ident}/{ident}_c2_1.jpg",
                     f"sysu_test_set_all/gallery/{ident}/{ident}_c1_1.jpg"}
    expected |= {f"sysu_test_set_all/gallery/0000others/0000others_c1_{n}.jpg" for n in range(1, 51)}
    expected |= {f"sysu_train_set_all/{b:010d}/{b:010d}_{n}.jpg" for b in range(1, 4) for n in range(1, 5)}
    assert set(_files(root)) == expected
    assert not (base / "a" / "sysu30k.partial").exists()
    assert stats["a"]["query"] == 8 and stats["a"]["gallery"] == 58 and stats["a"]["train"] == 12
    with Image.open(root / "sysu_test_set_all/query/0000001/0000001_c2_1.jpg") as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 128))


def test_meta_lists_match_files(generated):
    root = generated[0] / "a" / "sysu30k"
    for split, folder in (("train", "sysu_train_set_all"), ("query", "sysu_test_set_all/query"),
                          ("gallery", "sysu_test_set_all/gallery")):
        listed = (root / "meta" / f"{split}.txt").read_text().splitlines()
        on_disk = sorted(p.relative_to(root).as_posix() for p in (root / folder).rglob("*.jpg"))
        assert listed == on_disk


def test_one_true_match_per_query_on_another_camera_and_distractors(generated):
    images = read_sysu(generated[0] / "a" / "sysu30k")
    query = [im for im in images if im.split == "query"]
    gallery = [im for im in images if im.split == "gallery"]
    assert len(query) == 8 and all(im.camera == 2 for im in query)
    for q in query:
        matches = [g for g in gallery if g.label == q.label]
        assert len(matches) == 1 and matches[0].camera != q.camera
    distractors = [g for g in gallery if g.is_distractor]
    assert len(distractors) == 50 and all(g.label == -1000 for g in distractors)


def test_appearance_depends_only_on_seed_and_identity():
    assert appearance(0, 5) == appearance(0, 5)
    assert appearance(0, 5) != appearance(1, 5)
    people = [appearance(0, i) for i in range(1, 41)]
    assert len(set(people)) == 40
    # Attributes are drawn from small palettes, so different people often share some of them.
    assert len({p.pattern for p in people}) == 3 and len({p.bag for p in people}) == 3
    assert len({p.long_sleeves for p in people}) == 2


def test_classification_look_dresses_people_in_that_world_with_a_class_print(tmp_path):
    import numpy as np

    from pipeline.data.look import look_for
    from pipeline.data.shapes import PALETTE

    look = look_for("classification", {"palette_size": 2, "colour_jitter": 10, "background_contrast": [0.0, 0.0],
                                       "object_texture": 0.0, "rotation": 15})
    emblems = ("circle", "star", "cross")
    people = [appearance(0, i, look, emblems) for i in range(1, 31)]
    assert appearance(0, 1, look, emblems) == people[0] and appearance(0, 1).emblem is None
    assert {p.emblem for p in people} == set(emblems)
    for p in people:  # clothes from the two neutrals (jittered), never the native palettes' colours
        for colour in (p.shirt, p.trousers, p.shoes, p.bag_colour):
            assert min(np.abs(np.array(colour) - c).max() for c in PALETTE[:2]) < 40
    generate_sysu(tmp_path / "sysu30k", CFG | {"distractors": 2}, 0, look, emblems)
    query = sorted((tmp_path / "sysu30k").glob("sysu_test_set_all/query/*/*.jpg"))
    assert len(query) == CFG["query_ids"]
    for path in query:  # both cameras see flat two-tone backgrounds (top corners, away from the person)
        arr = np.asarray(Image.open(path), dtype=np.float32)
        corners = np.concatenate([arr[:6, :6].reshape(-1, 3), arr[:6, -6:].reshape(-1, 3)])
        assert np.abs(corners - corners.mean(1, keepdims=True)).max() < 45
