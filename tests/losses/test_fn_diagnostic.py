"""The hardest-negative false-negative rate every loss logs: a literal loop reference, and the same value
as the truncated triplet loss's own `fn_hardest` for the same embeddings."""
from __future__ import annotations

import pytest
import torch

from pipeline.losses import TruncatedTripletLoss, false_negative_rates, hardest_false_negative_rate


def _reference(online, target, labels) -> float:
    hits = 0
    for i in range(len(online)):
        sims = [(torch.cosine_similarity(online[i], target[j], dim=0).item(), j)
                for j in range(len(target)) if j != i]
        hits += int(labels[max(sims)[1]] == labels[i])
    return hits / len(online)


def test_matches_a_loop_reference():
    gen = torch.Generator().manual_seed(1)
    online, target = torch.randn(20, 8, generator=gen), torch.randn(20, 8, generator=gen)
    labels = torch.randint(0, 3, (20,), generator=gen)
    assert hardest_false_negative_rate(online, target, labels).item() == pytest.approx(
        _reference(online, target, labels))


def test_equals_the_triplet_loss_hardest_rate():
    gen = torch.Generator().manual_seed(2)
    online, target = torch.randn(16, 8, generator=gen), torch.randn(16, 8, generator=gen)
    labels = torch.arange(16) % 4
    _, stats = TruncatedTripletLoss()(online, target, return_stats=True)
    assert hardest_false_negative_rate(online, target, labels).item() == pytest.approx(
        false_negative_rates(stats, labels)["hardest"].item())


def test_clustered_embeddings_give_one_and_the_positive_is_never_counted():
    labels = torch.tensor([0, 0, 1, 1])
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    x = centres[labels] + 0.01 * torch.arange(4.0).view(-1, 1)
    assert hardest_false_negative_rate(x, x, labels).item() == 1.0
    # Every image its own class: the only same-class item is the positive, which must be excluded.
    assert hardest_false_negative_rate(x, x, torch.arange(4)).item() == 0.0


def test_a_batch_without_negatives_is_refused():
    with pytest.raises(ValueError, match="no negatives"):
        hardest_false_negative_rate(torch.randn(1, 4), torch.randn(1, 4), torch.zeros(1, dtype=torch.long))
