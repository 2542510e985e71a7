"""COCO 2017-layout detection data for fine-tuning: images, boxes, polygon masks, and the training sampler.

Reads `<root>/annotations/instances_<split>.json` through `pipeline.data.readers_coco.read_coco` (which
checks the layout and the keys) and, when the validate stage's manifests are given, keeps only the
images and annotations they list, so that files quarantined by `validate.on_error=quarantine` stay out:
of training, and of the ground truth COCOeval scores against (`split.coco` is restricted to them).
Image paths are checked to stay inside the dataset root before they are opened (as the validate stage
does), also when the json was never validated.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ..data.errors import DatasetLayoutError
from ..data.readers_coco import CocoSplit, image_path, read_coco


@dataclass
class CocoDetection(torch.utils.data.Dataset):
    """One split as torchvision detection samples: (float image CHW in [0, 1], target dict).

    target: boxes (N, 4) xyxy float, labels (N,) int64 in 1..K (0 is torchvision's background), masks
    (N, H, W) uint8, image_id. Crowd annotations are skipped (as in detectron2 / torchvision's
    references, they are neither positives nor negatives for training; COCOeval ignores them itself), and
    so are boxes under one pixel wide or high, which torchvision's RPN rejects. An image without usable
    annotations yields empty tensors: Mask R-CNN treats it as background only.
    """

    split: CocoSplit
    image_ids: list[int]
    cat_to_label: dict[int, int]
    ann_ids: set[int] | None = None  # None: every annotation of the json
    hflip: bool = False  # random horizontal flip (training), drawn from torch's global RNG

    @property
    def label_to_cat(self) -> dict[int, int]:
        return {v: k for k, v in self.cat_to_label.items()}

    @property
    def category_names(self) -> dict[int, str]:
        """label -> category name."""
        return {label: self.split.coco.cats[cat].get("name", str(cat)) for cat, label in self.cat_to_label.items()}

    def __len__(self) -> int:
        return len(self.image_ids)

    def load_image(self, image_id: int) -> Image.Image:
        path = image_path(self.split, image_id)  # PathOutsideRootError before any open
        try:
            with Image.open(path) as im:
                return im.convert("RGB")  # grayscale / CMYK JPEGs exist in real COCO
        except (OSError, ValueError) as e:
            raise DatasetLayoutError(f"{path}: cannot read image {image_id} ({e})") from None

    def annotations(self, image_id: int) -> list[dict]:
        coco = self.split.coco
        anns = [coco.anns[a] for a in coco.getAnnIds(imgIds=[image_id])]
        if self.ann_ids is not None:
            anns = [a for a in anns if a["id"] in self.ann_ids]
        return [a for a in anns if not a.get("iscrowd", 0) and a["bbox"][2] >= 1 and a["bbox"][3] >= 1]

    def __getitem__(self, index: int):
        image_id = self.image_ids[index]
        img = self.load_image(image_id)
        w, h = img.size
        anns = self.annotations(image_id)
        boxes = torch.tensor([[x, y, x + bw, y + bh] for x, y, bw, bh in (a["bbox"] for a in anns)],
                             dtype=torch.float32).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        masks = np.stack([self._mask(a, h, w) for a in anns]) if anns else np.zeros((0, h, w), np.uint8)
        image = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        masks = torch.from_numpy(masks)
        if self.hflip and torch.rand(()) < 0.5:
            image, masks = image.flip(-1), masks.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
        target = {"boxes": boxes, "masks": masks, "image_id": image_id,
                  "labels": torch.tensor([self.cat_to_label[a["category_id"]] for a in anns], dtype=torch.int64)}
        return image.float().div_(255), target

    def _mask(self, ann: dict, h: int, w: int) -> np.ndarray:
        seg = ann.get("segmentation")
        if not seg:  # a box-only annotation: the box is the best mask there is
            x, y, bw, bh = ann["bbox"]
            m = np.zeros((h, w), np.uint8)
            m[int(y):int(np.ceil(y + bh)), int(x):int(np.ceil(x + bw))] = 1
            return m
        if isinstance(seg, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            rle = seg
        return mask_utils.decode(rle).astype(np.uint8)


def collate(batch):
    return tuple(zip(*batch))


def _manifest_ids(manifests: Path, split: str) -> tuple[set[int], set[int]]:
    """Image ids (that decode) and annotation ids of `split` listed in the validated manifests."""
    files = {name: Path(manifests) / f"coco_{name}.csv" for name in ("images", "annotations")}
    for f in files.values():
        if not f.is_file():
            raise DatasetLayoutError(f"{f}: validated COCO manifest not found (run the validate stage with "
                                     "'coco' in validate.datasets)")
    images = pd.read_csv(files["images"])
    anns = pd.read_csv(files["annotations"])
    images = images[(images["split"] == split) & images["decodes"].astype(bool)]
    return set(images["image_id"].astype(int)), set(anns.loc[anns["split"] == split, "ann_id"].astype(int))


def restrict(coco: COCO, image_ids, ann_ids=None) -> COCO:
    """A new, indexed COCO with only `image_ids` and their annotations in `ann_ids` (None: all of theirs);
    categories and the other top-level keys are kept. `coco` is not modified."""
    images, keep = set(image_ids), None if ann_ids is None else set(ann_ids)
    data = dict(coco.dataset)
    data["images"] = [im for im in coco.dataset["images"] if im["id"] in images]
    data["annotations"] = [a for a in coco.dataset["annotations"]
                           if a["image_id"] in images and (keep is None or a["id"] in keep)]
    out = COCO()
    out.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress messages
        out.createIndex()
    return out


def load_split(root: str | Path, split: str, manifests: str | Path | None = None, *, train: bool,
               cat_to_label: dict[int, int] | None = None, follow_external_symlinks: bool = False) -> CocoDetection:
    """A split ready for training (`train=True`: random flips) or evaluation.

    With `manifests`, the split's COCO (`.split.coco`, also the ground truth for evaluation) holds exactly
    the images and annotations the validated manifests list. Raises DatasetLayoutError naming the
    annotation file when it has no annotations at all (the key is missing, or the list is empty / nothing
    usable is left): there is nothing to train on or score; PathOutsideRootError (a DatasetLayoutError)
    when an image's file_name leaves the dataset root, or is a symlink out of it without
    `follow_external_symlinks` (validate.follow_external_symlinks).
    """
    split_data = read_coco(Path(root), split, follow_external_symlinks=follow_external_symlinks)
    coco, ann_file = split_data.coco, split_data.ann_file
    image_ids, ann_ids = sorted(coco.imgs), None
    if manifests is not None:
        listed, ann_ids = _manifest_ids(Path(manifests), split)
        image_ids = [i for i in image_ids if i in listed]
        split_data = replace(split_data, coco=restrict(coco, image_ids, ann_ids))
    if not image_ids:
        raise DatasetLayoutError(f"{ann_file}: no images to use in split {split!r}")
    for image_id in image_ids:  # here, not in a DataLoader worker halfway through training
        image_path(split_data, image_id)
    ds = CocoDetection(split_data, image_ids, cat_to_label or {}, ann_ids, hflip=train)
    usable = sum(len(ds.annotations(i)) for i in image_ids)
    if not usable:
        raise DatasetLayoutError(
            f"{ann_file}: split {split!r} has {len(coco.anns)} annotation(s) and none usable (non-crowd, box"
            f" at least 1x1 px{', listed in the validated manifest' if manifests is not None else ''}) among its"
            f" {len(image_ids)} image(s): nothing to {'train on' if train else 'evaluate'}")
    if cat_to_label is None:  # contiguous labels 1..K in category-id order (COCO's ids have gaps)
        ds.cat_to_label = {cat: i + 1 for i, cat in enumerate(sorted(coco.cats))}
    unknown = sorted({a["category_id"] for i in image_ids for a in ds.annotations(i)} - set(ds.cat_to_label))
    if unknown:
        raise DatasetLayoutError(f"{ann_file}: annotations use category id(s) {unknown[:5]} not among the"
                                 f" categories {sorted(ds.cat_to_label)[:10]}")
    return ds


class IterationSampler(torch.utils.data.Sampler):
    """Indices for `iterations * batch_size` draws: a fresh seeded permutation per pass over the data.

    Iteration-based schedules (detectron2's 90k / 180k) do not end on epoch boundaries. Under DDP each
    rank takes every world_size-th index of the same permutation.
    """

    def __init__(self, n: int, total: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.total, self.seed, self.rank, self.world = n, total, seed, rank, world_size

    def __iter__(self):
        g, taken, epoch = torch.Generator(), 0, 0
        while taken < self.total:
            g.manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.n, generator=g)[self.rank::self.world].tolist()
            for i in perm[: self.total - taken]:
                yield i
            taken += min(len(perm), self.total - taken)
            epoch += 1

    def __len__(self) -> int:
        return self.total
