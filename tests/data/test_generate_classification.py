"""The embedded ImageFolder set: deterministic bytes, layout, and the readers on it."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.generate_classification import ClassificationSpec, draw_example, generate_classification
from pipeline.data.readers_imagefolder import class_set, read_imagefolder

SMALL = {"classes": 4, "image_size": 32, "train_per_class": 6, "val_per_class": 3, "palette_size": 8,
         "scale": [0.5, 0.85], "max_distractors": 2, "jpeg_quality": 90}


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen") / "imagenet"
    generate_classification(root, SMALL, seed=7)
    return root


def test_same_seed_same_bytes_other_seed_differs(generated, tmp_path):
    again = tmp_path / "again"
    generate_classification(again, SMALL, seed=7)
    assert _digests(again) == _digests(generated)
    other = tmp_path / "other"
    generate_classification(other, SMALL, seed=8)
    assert _digests(other).keys() == _digests(generated).keys()
    assert _digests(other) != _digests(generated)


def test_layout_is_imagefolder(generated):
    assert class_set(generated) == sorted(["circle", "square", "triangle", "star"])
    train = read_imagefolder(generated, "train")
    val = read_imagefolder(generated, "val", train.classes)
    assert len(train.images) == 4 * 6 and len(val.images) == 4 * 3
    assert all(im.label == train.classes.index(im.class_name) for im in train.images + val.images)
    with Image.open(train.images[0].path) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (32, 32)


def test_no_partial_folder_left_behind(generated):
    assert not (generated.parent / "imagenet.partial").exists()


def test_colour_carries_no_class_information():
    # Mean colour per class must be alike: a class-specific palette would be a shortcut (docs/method.md section 5).
    spec = ClassificationSpec.from_dict(SMALL | {"classes": 4})
    means = np.array([[np.asarray(draw_example(spec, 0, 0, c, i), dtype=np.float32).mean((0, 1))
                       for i in range(40)] for c in range(4)])  # class x image x rgb
    per_class = means.mean(1)
    spread_between = per_class.std(0).mean()
    spread_within = means.std(1).mean()
    assert spread_between < 0.35 * spread_within


def test_bad_class_count_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="generate.classification.classes = 200"):
        generate_classification(tmp_path / "x", SMALL | {"classes": 200}, seed=0)


def test_two_tone_palette_draws_both_polarities_and_no_third_colour():
    # palette_size 2 (the default): object and background are the light and the dark neutral, either way round.
    spec = ClassificationSpec.from_dict(SMALL | {"palette_size": 2, "colour_jitter": 0, "max_distractors": 0,
                                                 "background_contrast": [0.0, 0.0], "object_texture": 0.0})
    light_background = []
    for i in range(30):
        img = np.asarray(draw_example(spec, 0, 0, i % 4, i), dtype=np.float32)
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).mean(1)
        light_background.append(np.median(border) > 128)
        grey = img.mean(2)
        assert np.abs(img - grey[..., None]).max() < 30  # neutral tones only: no hue to identify an image
    assert 0.2 < np.mean(light_background) < 0.8


def test_many_class_vocabulary_composes_shapes_patterns_and_layouts():
    from pipeline.data import shapes
    from pipeline.data.generate_classification import MAX_CLASSES, class_parts

    spec = ClassificationSpec.from_dict(SMALL | {"classes": MAX_CLASSES, "image_size": 64})
    names = spec.class_names()
    assert MAX_CLASSES == 144 and len(set(names)) == 144
    assert names[:12] == list(shapes.SHAPES)  # a set of up to 12 classes is the plain shapes, as before
    assert names[12] == "circle-stripes-one" and names[-1] == "lshape-holed-triple"
    assert spec.shape_names() == list(shapes.SHAPES)
    assert ClassificationSpec.from_dict(SMALL | {"classes": 4}).shape_names() == list(shapes.SHAPES[:4])
    assert {class_parts(i)[1:] for i in range(144)} == {(p, l) for p in ("solid", "stripes", "outline", "holed")
                                                        for l in ("one", "pair", "triple")}
    # Same draw, other pattern or layout: the picture differs, the object covers less than the solid one.
    ink = {}
    for label in (0, 12, 24, 36, 48, 96):  # circle: solid, stripes, outline, holed; solid pair, solid triple
        img = np.asarray(draw_example(spec, 0, 0, label, 0).convert("L"), dtype=np.float32)
        ink[class_parts(label)[1:]] = img
    solid = ink[("solid", "one")]
    for key, img in ink.items():
        if key != ("solid", "one"):
            assert np.abs(img - solid).mean() > 3, key
    with pytest.raises(ValueError, match="expected 2..144"):
        ClassificationSpec.from_dict(SMALL | {"classes": 145}).class_names()


def test_many_class_data_group_generates_144_class_folders(tmp_path):
    from pipeline.config import compose, validate_params

    p = validate_params(compose(["data=embedded_many"]))
    spec = p.generate.classification
    assert (p.data.name, p.data.num_classes, spec.classes) == ("embedded_many", 144, 144)
    assert p.data.classification.root.startswith(p.generate.out_dir)
    assert (spec.train_per_class, spec.val_per_class, spec.palette_size) == (40, 10, 2)  # the default look
    assert p.train.batch_size / p.data.num_classes <= 1.3  # at most about one same-class negative per query
    small = spec.model_dump() | {"image_size": 32, "train_per_class": 1, "val_per_class": 1}
    stats = generate_classification(tmp_path / "imagenet", small, seed=0)
    assert stats == {"classes": 144, "train_images": 144, "val_images": 144}
    train = read_imagefolder(tmp_path / "imagenet", "train")
    assert len(train.classes) == 144 and len(train.images) == 144
    assert "star-outline-pair" in train.classes
