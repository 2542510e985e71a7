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


def _monitor(train_counts: list[int], val: int, k: int = 200):
    from types import SimpleNamespace

    from pipeline.evaluation.monitor import KnnLinearMonitor

    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(train_counts)])
    bank = [(torch.zeros(len(labels), 3, 8, 8), labels)]
    val_loader = [(torch.zeros(val, 3, 8, 8), torch.arange(val) % len(train_counts))]
    return KnnLinearMonitor(bank, val_loader, SimpleNamespace(k=k, temperature=0.1),
                            SimpleNamespace(epochs=1, lr=0.1, batch_size=8), 0, torch.device("cpu"))


def test_the_monitor_says_when_its_data_is_too_small_to_mean_much():
    notes = _monitor([144, 7, 150], val=359).notes()
    assert notes[0] == "kNN: k capped at 7 (eval.knn.k = 200): the smallest class has 7 training images"
    assert notes[1].startswith("linear probe: the smallest class has 7 training images (below 10")
    assert notes[2].startswith("359 validation images: one image is 0.28 points of top-1") and "2.6 points" in notes[2]
    assert _monitor([500, 600], val=1000).notes() == []
