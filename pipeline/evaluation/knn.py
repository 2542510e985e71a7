"""Weighted kNN classification on frozen features (InstDisc / BYOL monitor; docs/method.md section 4).

Features are L2-normalised; each val sample takes its k most similar train features (cosine) and
votes with weight exp(sim / temperature) for their labels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def capped_k(k: int, train_labels: torch.Tensor) -> int:
    """k, capped at the smallest class's count in the bank: beyond it, every vote of that class's val images
    must also go to other classes (200 neighbours of a class with 40 train images is 160 votes elsewhere)."""
    counts = torch.bincount(train_labels.long())
    counts = counts[counts > 0]
    return max(1, min(int(k), int(counts.min()) if len(counts) else int(k)))


@torch.no_grad()
def knn_top1(train_feats: torch.Tensor, train_labels: torch.Tensor, val_feats: torch.Tensor,
             val_labels: torch.Tensor, k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> float:
    """Top-1 accuracy in [0, 1]; processes val rows in chunks to bound memory."""
    if len(train_feats) == 0 or len(val_feats) == 0:
        raise ValueError(f"kNN needs non-empty banks, got {len(train_feats)} train and {len(val_feats)} val features")
    k = min(k, len(train_feats))
    bank = F.normalize(train_feats.float(), dim=1)
    classes = int(max(train_labels.max(), val_labels.max())) + 1
    correct = 0
    for start in range(0, len(val_feats), chunk):
        q = F.normalize(val_feats[start:start + chunk].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(q), classes, device=q.device)
        votes.scatter_add_(1, train_labels[idx], (sim / temperature).exp())
        correct += (votes.argmax(1) == val_labels[start:start + chunk]).sum().item()
    return correct / len(val_feats)


@torch.no_grad()
def extract_features(backbone: torch.nn.Module, batches, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a backbone in eval mode over (images, labels) batches; restores its previous mode.

    Bags of patches ([B, n, 3, H, W] images, `loaders.eval.PatchBagEvalLoader`) give each image the mean of its
    n patches' features (EMP-SSL's bag-of-patches embedding), computed B patches at a time."""
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    for images, y in batches:
        images = images.to(device, non_blocking=True)
        if images.ndim == 5:
            flat = images.flatten(0, 1)
            out = torch.cat([backbone(flat[i:i + len(images)]) for i in range(0, len(flat), len(images))])
            feats.append(out.float().unflatten(0, images.shape[:2]).mean(1).cpu())
        else:
            feats.append(backbone(images).float().cpu())
        labels.append(y.cpu())
    backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)
