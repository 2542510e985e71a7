"""The kNN monitor's k is capped at the smallest class's train count."""
from __future__ import annotations

import torch

from pipeline.evaluation.knn import capped_k, knn_top1


def test_k_is_capped_at_the_smallest_class():
    labels = torch.tensor([0] * 40 + [1] * 7 + [2] * 300)
    assert capped_k(200, labels) == 7
    assert capped_k(5, labels) == 5
    assert capped_k(200, torch.tensor([3] * 50)) == 50  # labels need not start at 0


def test_uncapped_k_drowns_a_small_class_that_the_cap_recovers():
    # Class 1 has 5 train images right at its val images; class 0 has 100 a little further away. With k = 100
    # the big class outvotes the small one; with k capped at 5 the small class wins its own images.
    torch.manual_seed(0)
    big = torch.randn(100, 8) * 0.05 + torch.tensor([1.0] + [0.0] * 7)
    small = torch.randn(5, 8) * 0.01 + torch.tensor([0.9, 0.44] + [0.0] * 6)
    train = torch.cat([big, small])
    labels = torch.tensor([0] * 100 + [1] * 5)
    val = torch.tensor([[0.9, 0.44] + [0.0] * 6]).repeat(4, 1)
    val_labels = torch.ones(4, dtype=torch.long)
    assert knn_top1(train, labels, val, val_labels, k=100, temperature=1.0) == 0.0
    assert knn_top1(train, labels, val, val_labels, k=capped_k(100, labels), temperature=1.0) == 1.0
