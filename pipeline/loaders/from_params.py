"""The loaders as the pipeline's stages use them: configured from params.yaml, refusing stale .beton files.

Every function checks that `data/beton/<name>.beton` exists, is complete, was written from the current
manifest and with the current convert parameters (BetonError naming the file otherwise), then builds
the loader with the params' sizes and knobs; keyword overrides win over params.

    loader = ssl_loader(params, device="cuda", distributed=True)   # classification_train, two views
    query = reid_eval_loader(params, "sysu_query")
"""
from __future__ import annotations

from pathlib import Path

from ..ffcv_io.datasets import BETON_DIR, MANIFESTS, plan_for
from ..ffcv_io.encode import EncodeSettings
from ..methods.catalog import PATCH_METHODS


def expectations(params, name: str, beton_dir: Path = BETON_DIR, manifest_dir: Path = MANIFESTS) -> dict:
    """{beton, manifest, settings} for the .beton `name` (e.g. 'classification_train')."""
    plan = plan_for(params, name)
    return {"beton": Path(beton_dir) / plan.file_name, "manifest": Path(manifest_dir) / plan.manifest,
            "settings": EncodeSettings.from_params(params.convert).as_dict()}


def _common(params) -> dict:
    knobs = params.convert.loader
    return {"num_workers": params.train.num_workers, "os_cache": knobs.os_cache,
            "batches_ahead": knobs.batches_ahead}


def ssl_loader(params, name: str = "classification_train", *, device="cpu", distributed: bool = False,
               beton_dir: Path = BETON_DIR, manifest_dir: Path = MANIFESTS, **overrides):
    from .ssl import SSLLoader

    e = expectations(params, name, beton_dir, manifest_dir)
    kwargs = {**_common(params), "batch_size": params.train.batch_size, "image_size": params.train.image_size,
              "seed": params.seed, "order": params.convert.loader.order,
              "crop_scale": tuple(params.convert.loader.crop_scale), "local_views": params.train.local_views,
              "local_size": params.train.local_image_size,
              "local_crop_scale": tuple(params.convert.loader.local_crop_scale), **_patches(params), **overrides}
    return SSLLoader(e["beton"], device=device, distributed=distributed, manifest=e["manifest"],
                     settings=e["settings"], **kwargs)


def _patches(params) -> dict:
    """EMP-SSL's training patches (docs/methods.md); nothing for the other methods."""
    if params.method not in PATCH_METHODS:
        return {}
    return {"patches": params.loss.patches, "patch_scale": params.loss.patch_scale}


def classification_eval_loader(params, name: str = "classification_val", *, device="cpu",
                               distributed: bool = False, beton_dir: Path = BETON_DIR,
                               manifest_dir: Path = MANIFESTS, patch_bags: bool | None = None, **overrides):
    """Centre crops, or for the methods evaluated on bags of patches (EMP-SSL; patch_bags=None: as the
    method says), loss.eval_patches patches of each image (`PatchBagEvalLoader`)."""
    from .eval import ClassificationEvalLoader, PatchBagEvalLoader

    e = expectations(params, name, beton_dir, manifest_dir)
    if params.method in PATCH_METHODS if patch_bags is None else patch_bags:
        kwargs = {**_common(params), "batch_size": params.eval.linear.batch_size,
                  "image_size": params.train.image_size, "patches": params.loss.eval_patches,
                  "patch_scale": params.loss.patch_scale, "seed": params.seed, **overrides}
        return PatchBagEvalLoader(e["beton"], device=device, distributed=distributed, manifest=e["manifest"],
                                  settings=e["settings"], **kwargs)
    kwargs = {**_common(params), "batch_size": params.eval.linear.batch_size, "image_size": params.train.image_size,
              "crop_ratio": params.convert.loader.eval_crop_ratio, **overrides}
    return ClassificationEvalLoader(e["beton"], device=device, distributed=distributed, manifest=e["manifest"],
                                    settings=e["settings"], **kwargs)


def linear_train_loader(params, name: str = "classification_train", *, device="cpu", distributed: bool = False,
                        beton_dir: Path = BETON_DIR, manifest_dir: Path = MANIFESTS, **overrides):
    from .eval import LinearTrainLoader

    e = expectations(params, name, beton_dir, manifest_dir)
    kwargs = {**_common(params), "batch_size": params.eval.linear.batch_size, "image_size": params.train.image_size,
              "seed": params.seed, "order": params.convert.loader.order,
              "crop_scale": tuple(params.convert.loader.crop_scale), **overrides}
    return LinearTrainLoader(e["beton"], device=device, distributed=distributed, manifest=e["manifest"],
                             settings=e["settings"], **kwargs)


def reid_eval_loader(params, name: str, *, device="cpu", distributed: bool = False, beton_dir: Path = BETON_DIR,
                     manifest_dir: Path = MANIFESTS, **overrides):
    """name: sysu_query, sysu_gallery or sysu_train."""
    from .eval import ReidEvalLoader

    e = expectations(params, name, beton_dir, manifest_dir)
    kwargs = {**_common(params), "batch_size": params.eval.reid.batch_size, "height": params.eval.reid.height,
              "width": params.eval.reid.width, **overrides}
    return ReidEvalLoader(e["beton"], device=device, distributed=distributed, manifest=e["manifest"],
                          settings=e["settings"], **kwargs)
