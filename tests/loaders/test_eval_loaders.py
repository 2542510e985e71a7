"""Evaluation loaders: what they decode is close to the usual PIL path; fields come back in manifest order."""
from __future__ import annotations

import numba as nb
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torchvision.transforms import v2

from pipeline.loaders.augment import IMAGENET_MEAN, IMAGENET_STD
from pipeline.loaders.eval import ClassificationEvalLoader, LinearTrainLoader, ReidEvalLoader

MEAN, STD = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


def _pil(path, transform) -> torch.Tensor:
    with Image.open(path) as im:
        return v2.functional.to_dtype(v2.functional.pil_to_tensor(transform(im.convert("RGB"))), torch.float32,
                                      scale=True)


def test_classification_eval_is_close_to_resize_and_centre_crop(tiny):
    loader = ClassificationEvalLoader(tiny.val, image_size=16, crop_ratio=0.875, batch_size=7)
    batches = list(loader)
    images = _unnormalise(torch.cat([b[0] for b in batches]))
    labels = torch.cat([b[1] for b in batches])
    rows = pd.read_csv(tiny.manifest).query("split == 'val'")
    assert len(loader) == 3 and images.shape == (16, 3, 16, 16)  # 16 images, no batch dropped
    assert labels.tolist() == rows["label"].tolist()  # manifest order
    pil = v2.Compose([v2.Resize(round(16 / 0.875)), v2.CenterCrop(16)])  # Resize 256 + CenterCrop 224, scaled
    expected = torch.stack([_pil(tiny.root / p, pil) for p in rows["path"]])
    diff = (images - expected).abs().mean().item()
    assert diff < 0.02, f"mean abs difference {diff:.4f} to the PIL path"  # JPEG re-encode + resampling


def test_reid_eval_resizes_whole_image_and_returns_fields(tiny):
    loader = ReidEvalLoader(tiny.query, height=32, width=16, batch_size=4)
    batches = list(loader)
    images = _unnormalise(torch.cat([b[0] for b in batches]))
    label, camera, distractor = (torch.cat([b[i] for b in batches]) for i in (1, 2, 3))
    rows = pd.read_csv(tiny.sysu_manifest)
    assert images.shape == (6, 3, 32, 16)
    assert label.tolist() == rows["label"].tolist() and camera.tolist() == [2] * 6
    assert distractor.tolist() == [0, 0, 0, 0, 0, 1]
    expected = torch.stack([_pil(tiny.sysu_root / p, v2.Resize((32, 16))) for p in rows["path"]])
    assert (images - expected).abs().mean().item() < 0.05  # noise images: the hardest case for resampling


def test_linear_train_loader_gives_single_crops(tiny):
    loader = LinearTrainLoader(tiny.train, image_size=16, seed=0, batch_size=8, drop_last=True)
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_numba_types_are_not_mutated_by_ffcv(tiny):
    # ffcv 1.0.2 flips `mutable` on numba's interned uint8[::1] type; pipeline.loaders undoes that bug.
    assert nb.uint8[::1].mutable and np.dtype(nb.uint8[::1].dtype.name) == np.uint8


def test_labels_kept_across_many_batches_stay_correct(tiny):
    # ffcv recycles its output buffers every few batches; kept labels must not change underneath.
    loader = ClassificationEvalLoader(tiny.train, image_size=16, batch_size=2, num_workers=1)
    labels = torch.cat([b[1] for b in loader])
    rows = pd.read_csv(tiny.manifest).query("split == 'train'")
    assert len(loader) > 8 and labels.tolist() == rows["label"].tolist()
