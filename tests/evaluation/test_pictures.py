"""The pictures a user looks at: the t-SNE embedding map, the detections drawn when a detector is weak."""
from __future__ import annotations

import torch

from pipeline.evaluation.coco_plot import MAX_DRAWN, WEAK_DRAWN, shown_detections
from pipeline.evaluation.embedding import embedding_picture, subsample, tsne


def _clusters(n=300, classes=3, dim=32, spread=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    return torch.randn(classes, dim, generator=g)[labels] * 5 + spread * torch.randn(n, dim, generator=g), labels


def test_tsne_keeps_separated_classes_apart_and_is_deterministic():
    x, labels = _clusters()
    y = tsne(x, iterations=250)
    assert y.shape == (300, 2) and torch.isfinite(y).all()
    centres = torch.stack([y[labels == c].mean(0) for c in range(3)])
    within = torch.stack([(y[labels == c] - centres[c]).norm(dim=1).mean() for c in range(3)]).mean()
    assert torch.cdist(centres, centres)[~torch.eye(3, dtype=torch.bool)].min() > 3 * within
    assert torch.equal(y, tsne(x, iterations=250))


def test_subsample_keeps_everything_up_to_the_limit_and_the_same_rows_for_a_seed():
    assert torch.equal(subsample(10, limit=20), torch.arange(10))
    rows = subsample(5000, limit=1000, seed=3)
    assert len(rows) == 1000 and torch.equal(rows, subsample(5000, limit=1000, seed=3)) and rows.unique().numel() == 1000


def test_embedding_picture_draws_one_panel_per_backbone(tmp_path):
    x, labels = _clusters(n=120)
    embedding_picture(tmp_path / "e.png", {"random_init": (x, labels), "pretrained": (x * 2, labels)}, "t")
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_weak_detections_are_still_shown_and_confident_ones_capped():
    assert shown_detections([0.9, 0.2, 0.6, 0.55]) == ([0, 2, 3], True)
    assert shown_detections([0.05, 0.3, 0.1, 0.2, 0.01]) == ([1, 3, 2][:WEAK_DRAWN], False)
    assert shown_detections([]) == ([], False)
    assert len(shown_detections([0.9] * 30)[0]) == MAX_DRAWN


def test_tsne_copes_with_fewer_points_than_feature_dimensions():
    x, _ = _clusters(n=30, dim=512)
    assert tsne(x, iterations=50).shape == (30, 2)


def test_tsne_of_one_or_two_points_is_a_row_not_a_failure():
    assert tsne(torch.randn(1, 8)).shape == (1, 2) and torch.isfinite(tsne(torch.randn(2, 8))).all()
