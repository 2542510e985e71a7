"""A missing, truncated or stale .beton is refused with an error naming the file (before ffcv sees it)."""
from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from pipeline.config import load_params
from pipeline.ffcv_io.sidecar import BetonError, check_beton, sidecar_path
from pipeline.loaders import from_params
from pipeline.loaders.eval import ClassificationEvalLoader
from pipeline.loaders.ssl import SSLLoader


@pytest.fixture
def copy(tiny, tmp_path):
    """A private copy of the train .beton, its sidecar and manifest, free to damage."""
    beton = tmp_path / tiny.train.name
    shutil.copy(tiny.train, beton)
    shutil.copy(sidecar_path(tiny.train), sidecar_path(beton))
    manifest = tmp_path / "classification.csv"
    shutil.copy(tiny.manifest, manifest)
    return beton, manifest


def test_current_file_passes(tiny, copy):
    beton, manifest = copy
    info = check_beton(beton, manifest, tiny.settings.as_dict())
    assert info["num_samples"] == 32 and info["fields"] == ["image", "label"]


def test_missing_file(tmp_path):
    missing = tmp_path / "classification_train.beton"
    with pytest.raises(BetonError, match=f"{missing}: .beton file not found"):
        SSLLoader(missing, batch_size=8, image_size=16)


def test_missing_sidecar(copy):
    beton, _ = copy
    sidecar_path(beton).unlink()
    with pytest.raises(BetonError, match=f"{beton}: its sidecar .* is missing"):
        ClassificationEvalLoader(beton, image_size=16)


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.001])
def test_truncated_file(copy, keep):
    beton, _ = copy
    data = beton.read_bytes()
    beton.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BetonError, match=f"{beton}: truncated"):
        SSLLoader(beton, batch_size=8, image_size=16)


def test_damaged_header_with_right_size(copy):
    beton, _ = copy
    data = bytearray(beton.read_bytes())
    data[16:24] = b"\xff" * 8  # the allocation table pointer
    beton.write_bytes(bytes(data))
    with pytest.raises(BetonError, match=f"{beton}: inconsistent layout"):
        check_beton(beton)


def test_stale_after_manifest_change(tiny, copy):
    beton, manifest = copy
    manifest.write_text(manifest.read_text().replace("train/", "train//", 1))
    with pytest.raises(BetonError, match=f"{beton}: stale: written from a different version of {manifest}"):
        SSLLoader(beton, batch_size=8, image_size=16, manifest=manifest, settings=tiny.settings.as_dict())


def test_stale_after_convert_params_change(tiny, copy):
    beton, manifest = copy
    with pytest.raises(BetonError, match=r"stale: written with different convert parameters \(convert.jpeg_quality"
                                         r" = 80 in params.yaml, 90 in the file\)"):
        check_beton(beton, manifest, replace(tiny.settings, jpeg_quality=80).as_dict())


def test_from_params_checks_against_params_yaml(tiny, tmp_path):
    # The tiny files were written with max_resolution 64; params.yaml asks for its own value.
    params = load_params()
    with pytest.raises(BetonError, match="stale: written with different convert parameters"):
        from_params.ssl_loader(params, beton_dir=tiny.betons, manifest_dir=tiny.manifests)
    with pytest.raises(BetonError, match="sysu_gallery.beton: .beton file not found"):
        from_params.reid_eval_loader(params, "sysu_gallery", beton_dir=tiny.betons, manifest_dir=tiny.manifests)
    with pytest.raises(ValueError, match="unknown .beton 'imagenet_train'"):
        from_params.expectations(params, "imagenet_train")
