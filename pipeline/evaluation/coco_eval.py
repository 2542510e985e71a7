"""COCOeval wrapper: detections in COCO result format -> box / mask AP, AP50, AP75 (fractions in [0, 1])."""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = ("AP", "AP50", "AP75")  # COCOeval.stats[0:3]


def to_coco_results(image_id: int, output: dict, label_to_cat: dict[int, int], mask_threshold: float = 0.5) -> list[dict]:
    """One image's torchvision Mask R-CNN output (boxes xyxy, labels, scores, masks N x 1 x H x W
    probabilities) as COCO result records: bbox xywh, original category id, score, RLE segmentation."""
    boxes = output["boxes"].detach().cpu()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    records = []
    masks = output.get("masks")
    binary = None if masks is None else (masks.detach().cpu()[:, 0] > mask_threshold).numpy()
    for i, (box, label, score) in enumerate(zip(xywh, output["labels"].tolist(), output["scores"].tolist())):
        rec = {"image_id": int(image_id), "category_id": int(label_to_cat[int(label)]),
               "bbox": [round(v, 2) for v in box], "score": float(score)}
        if binary is not None:
            rle = mask_utils.encode(np.asfortranarray(binary[i].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")  # JSON-friendly, as COCO result files store it
            rec["segmentation"] = rle
        records.append(rec)
    return records


def evaluate(coco_gt: COCO, results: list[dict], image_ids: list[int] | None = None,
             iou_types=IOU_TYPES) -> dict[str, dict[str, float]]:
    """COCOeval on `results` over `image_ids` (default: every image of coco_gt) for each IoU type.

    Returns {iou_type: {"AP": .., "AP50": .., "AP75": ..}}. No detections at all scores 0 (pycocotools
    cannot load an empty result list). The ground truth object is not modified.
    """
    if image_ids is None:
        image_ids = sorted(coco_gt.getImgIds())
    if not results:
        return {t: dict.fromkeys(STAT_NAMES, 0.0) for t in iou_types}
    out = {}
    for iou_type in iou_types:
        res = [r for r in results if iou_type != "segm" or "segmentation" in r]
        if not res:
            out[iou_type] = dict.fromkeys(STAT_NAMES, 0.0)
            continue
        # COCOeval's segm run turns the ground truth's polygons into RLEs in place: it gets a copy.
        gt = copy.deepcopy(coco_gt) if iou_type == "segm" else coco_gt
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints every step
            # loadRes adds area/ids to the records and, for segm, replaces bbox by the mask's box: copy.
            dt = gt.loadRes(copy.deepcopy(res))
            ev = COCOeval(gt, dt, iou_type)
            ev.params.imgIds = list(image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        # -1 means "no ground truth in this setting"; reported as 0 so that a gain is always a number.
        out[iou_type] = {name: max(float(ev.stats[i]), 0.0) for i, name in enumerate(STAT_NAMES)}
    return out
