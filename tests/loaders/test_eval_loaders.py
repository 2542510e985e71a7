"""Evaluation loaders: what they decode is close to the usual PIL path; fields come back in manifest order."""
from __future__ import annotations

import numba as nb
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from pipeline.ffcv_io.datasets import BetonPlan, convert_plan
from pipeline.ffcv_io.encode import EncodeSettings
from pipeline.loaders.augment import IMAGENET_MEAN, IMAGENET_STD
from pipeline.loaders.decoders import bicubic_resize
from pipeline.loaders.eval import ClassificationEvalLoader, LinearTrainLoader, PatchBagEvalLoader, ReidEvalLoader

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
    bicubic = v2.Resize((32, 16), interpolation=v2.InterpolationMode.BICUBIC)
    expected = torch.stack([_pil(tiny.sysu_root / p, bicubic) for p in rows["path"]])
    assert (images - expected).abs().mean().item() < 0.05  # noise images: the hardest case for resampling


def test_reid_eval_resize_is_pil_bicubic(tiny, tmp_path):
    # Raw pixels in the .beton (no JPEG re-encode): an upscale like the embedded 128x64 -> 256x128 must
    # equal PIL's bicubic resize exactly (up to float rounding of the normalisation).
    raw = EncodeSettings(max_resolution=64, write_mode="raw", jpeg_quality=90, compress_probability=0.0)
    plan = BetonPlan("sysu_query", "sysu.csv", str(tiny.sysu_root), "query", ("label", "camera", "is_distractor"))
    beton = convert_plan(plan, tiny.sysu_manifest, tmp_path, raw, 0).path
    images = _unnormalise(torch.cat([b[0] for b in ReidEvalLoader(beton, height=96, width=56, batch_size=4)]))
    rows = pd.read_csv(tiny.sysu_manifest)
    with_pil = [np.asarray(Image.open(tiny.sysu_root / p).convert("RGB").resize((56, 96), Image.BICUBIC))
                for p in rows["path"]]
    expected = torch.from_numpy(np.stack(with_pil)).permute(0, 3, 1, 2).float() / 255
    assert (images - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("size,out", [((128, 64), (256, 128)), ((57, 33), (256, 128)), ((300, 97), (300, 128)),
                                      ((300, 97), (256, 97)), ((40, 30), (13, 7)), ((64, 32), (64, 32))])
def test_bicubic_resize_matches_pil(size, out):
    img = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    got = np.zeros((*out, 3), np.uint8)
    bicubic_resize(img, got, np.zeros(size[0] * out[1] * 3, np.uint8))
    assert np.array_equal(got, np.asarray(Image.fromarray(img).resize(out[::-1], Image.BICUBIC)))


def test_bicubic_resize_is_close_to_pil_when_both_sides_shrink():
    # Pillow 13 may run its two passes in the other order here: a few levels on some pixels, no more.
    img = np.random.default_rng(0).integers(0, 256, (300, 97, 3), dtype=np.uint8)
    got = np.zeros((256, 80, 3), np.uint8)
    bicubic_resize(img, got, np.zeros(300 * 80 * 3, np.uint8))
    diff = np.abs(got.astype(int) - np.asarray(Image.fromarray(img).resize((80, 256), Image.BICUBIC)))
    assert diff.mean() < 1.0


def test_linear_train_loader_gives_single_crops(tiny):
    loader = LinearTrainLoader(tiny.train, image_size=16, seed=0, batch_size=8, drop_last=True)
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64


class ChannelMeans(torch.nn.Module):
    """A stand-in backbone whose features are the per-channel means of its input."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_patch_bags_are_fixed_per_image_and_their_feature_is_the_mean_over_patches(tiny):
    from pipeline.evaluation.knn import extract_features

    loader = PatchBagEvalLoader(tiny.train, image_size=16, patches=5, patch_scale=0.25, seed=0, batch_size=8)
    first = [(x.clone(), y.clone()) for x, y in loader]
    second = [(x.clone(), y.clone()) for x, y in loader]
    x, y = first[0]
    assert x.shape == (8, 5, 3, 16, 16) and x.dtype == torch.float32 and y.shape == (8,)
    assert not torch.allclose(x[:, 0], x[:, 1])  # five different patches of each image
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second))  # the same bag on every pass
    feats, labels = extract_features(ChannelMeans(), first, torch.device("cpu"))
    bags = torch.cat([x for x, _ in first])
    torch.testing.assert_close(feats, bags.mean(dim=(3, 4)).mean(1))
    assert torch.equal(labels, torch.cat([y for _, y in first]))


def test_numba_types_are_not_mutated_by_ffcv(tiny):
    # ffcv 1.0.2 flips `mutable` on numba's interned uint8[::1] type; pipeline.loaders undoes that bug.
    assert nb.uint8[::1].mutable and np.dtype(nb.uint8[::1].dtype.name) == np.uint8


def test_labels_kept_across_many_batches_stay_correct(tiny):
    # ffcv recycles its output buffers every few batches; kept labels must not change underneath.
    loader = ClassificationEvalLoader(tiny.train, image_size=16, batch_size=2, num_workers=1)
    labels = torch.cat([b[1] for b in loader])
    rows = pd.read_csv(tiny.manifest).query("split == 'train'")
    assert len(loader) > 8 and labels.tolist() == rows["label"].tolist()
