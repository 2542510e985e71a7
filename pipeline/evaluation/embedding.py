"""A picture of the learned representation: a 2-D t-SNE map of the val features per backbone, coloured by class.

t-SNE (van der Maaten and Hinton, 2008) is written here in torch (no scikit-learn at run time): Gaussian
affinities with a per-point bandwidth found by bisection to a fixed perplexity, symmetrised, then gradient
descent on the Kullback-Leibler divergence to a Student-t map with momentum, per-coordinate gains and early
exaggeration. A few thousand points take seconds on a CPU; more are subsampled (the same rows for every
backbone), so that the maps of random init, pretrained and supervised compare like for like.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .plots import save_figure

MAX_POINTS = 1000


def _affinities(x: torch.Tensor, perplexity: float, steps: int = 60) -> torch.Tensor:
    """Symmetric P (rows sum over the joint to 1) with each row's entropy at log(perplexity)."""
    d = torch.cdist(x, x).pow(2)
    d.fill_diagonal_(float("inf"))
    target = math.log(perplexity)
    lo = torch.full((len(x), 1), 1e-20, dtype=x.dtype)
    hi = torch.full((len(x), 1), 1e20, dtype=x.dtype)
    beta = torch.ones(len(x), 1, dtype=x.dtype)
    for _ in range(steps):  # bisection on the precision beta, all rows at once (in log space: it spans decades)
        logits = -d * beta
        p = torch.softmax(logits, dim=1)
        entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(1, keepdim=True)
        too_flat = entropy > target  # entropy too high: narrow the kernel (raise beta)
        lo = torch.where(too_flat, beta, lo)
        hi = torch.where(too_flat, hi, beta)
        beta = torch.sqrt(lo * hi)
    p = torch.softmax(-d * beta, dim=1)
    return (p + p.T) / (2 * len(x))


def tsne(features: torch.Tensor, perplexity: float = 30.0, iterations: int = 400, seed: int = 0) -> torch.Tensor:
    """[n, d] features -> [n, 2] map (affinities in float64, the descent in float32; deterministic for a seed)."""
    x = features.detach().double()
    if len(x) < 3:  # no neighbourhood to preserve: the points side by side
        return torch.stack([torch.arange(len(x), dtype=torch.float32), torch.zeros(len(x))], 1)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-8)
    components = min(50, *x.shape)
    if x.shape[1] > components:  # PCA to 50 dimensions first, as is usual: cheaper distances, less noise
        _, _, v = torch.pca_lowrank(x, q=components, center=False, niter=4)
        x = x @ v
    n = len(x)
    p = _affinities(x, min(perplexity, (n - 1) / 3)).float()
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(n, 2, generator=gen) * 1e-4
    velocity, gains = torch.zeros_like(y), torch.ones_like(y)
    lr = max(n / 12 / 4, 50.0)
    for it in range(iterations):
        exaggeration, momentum = (12.0, 0.5) if it < 150 else (1.0, 0.8)
        diff = y[:, None, :] - y[None, :, :]
        kernel = 1.0 / (1.0 + diff.pow(2).sum(-1))
        kernel.fill_diagonal_(0.0)
        q = (kernel / kernel.sum()).clamp_min(1e-12)
        grad = 4.0 * (((exaggeration * p - q) * kernel)[:, :, None] * diff).sum(1)
        same_sign = (grad > 0) == (velocity > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_min(0.01)
        velocity = momentum * velocity - lr * gains * grad
        y = y + velocity
        y = y - y.mean(0)
    return y.float()


def subsample(n: int, limit: int = MAX_POINTS, seed: int = 0) -> torch.Tensor:
    """The rows kept (sorted): all of them up to `limit`, else a seeded random subset."""
    if n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def embedding_picture(path: Path, features: dict[str, tuple[torch.Tensor, torch.Tensor]], title: str,
                      seed: int = 0) -> None:
    """One t-SNE panel per backbone (name -> (features, labels)), points coloured by class."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(features), figsize=(4.2 * len(features), 4.2), squeeze=False)
    for ax, (name, (x, labels)) in zip(axes[0], features.items()):
        keep = subsample(len(x), seed=seed)
        y = tsne(x[keep], seed=seed)
        classes = labels[keep].long()
        cmap = plt.get_cmap("tab10" if int(classes.max()) < 10 else "hsv")
        ax.scatter(y[:, 0], y[:, 1], c=classes.numpy(), cmap=cmap, s=4, alpha=0.8, linewidths=0)
        ax.set_title(name.replace("_", " "), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
