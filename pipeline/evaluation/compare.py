"""Comparing backbones in an evaluation: per-seed values, their mean and spread, a verdict per pair, and the
share of the supervised reference's gain the pretrained backbone recovers (docs/evaluation.md).

Every evaluation stage scores three backbones: `random_init` (the floor), `pretrained` (the method) and
`supervised` (the positive control, stage `supervised`). Evaluations that train something (the linear head,
COCO fine-tuning) run once per seed in `eval.seeds`, the same seeds for every backbone, so that backbones are
compared seed by seed: the difference of a pair is the mean of the per-seed differences, its standard error
their sample sd / sqrt(n). Deterministic evaluations (SYSU-30k retrieval without adaptation) compare per
query instead: the same formula over the queries' paired differences.

Verdict of "a vs b": `ahead` when the mean difference exceeds two standard errors, `behind` when it is below
minus two, `within spread` otherwise, and `not established` with fewer than two seeds (or queries).
"""
from __future__ import annotations

import math
import statistics
from typing import Sequence

BACKBONES = ("random_init", "pretrained", "supervised")
PAIRS = (("pretrained", "random_init"), ("supervised", "random_init"), ("pretrained", "supervised"))


def pair_name(a: str, b: str) -> str:
    """The verdicts' key of the pair a vs b, e.g. `pretrained_vs_random_init`."""
    return f"{a}_vs_{b}"


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to summarise")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def paired_verdict(a: Sequence[float], b: Sequence[float]) -> dict:
    """a vs b, paired element by element (seeds or queries): difference, two standard errors, verdict."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison of {len(a)} and {len(b)} values: expected the same seeds or queries")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    difference, sd = mean_sd(diffs)
    if sd is None:
        return {"difference": difference, "two_se": None, "verdict": "not established", "n": 1}
    two_se = 2 * sd / math.sqrt(len(diffs))
    if difference > two_se and difference > 0:
        verdict = "ahead"
    elif difference < -two_se and difference < 0:
        verdict = "behind"
    else:
        verdict = "within spread"
    return {"difference": difference, "two_se": two_se, "verdict": verdict, "n": len(diffs)}


def supervised_share(random_init: float, pretrained: float, supervised: float) -> float | None:
    """(pretrained - random) / (supervised - random): 1 = the supervised gain recovered, 0 = none of it."""
    gap = supervised - random_init
    return None if abs(gap) < 1e-12 else (pretrained - random_init) / gap


def compare(per_backbone: dict[str, dict[str, list[float]]], paired: dict[str, dict[str, list[float]]] | None = None
            ) -> dict:
    """The comparison block of an evaluation's metrics.

    per_backbone: backbone -> metric -> per-seed values (same seeds, same order for every backbone).
    paired: backbone -> metric -> per-item values to pair instead of the seeds (e.g. per-query AP), for
    evaluations whose runs are deterministic (every metric of per_backbone, for every backbone).
    Returns {"verdicts": {"<a>_vs_<b>": {metric: {difference, two_se, verdict, n}}},
             "supervised_share": {metric: share}} for the backbones present.
    """
    names = [b for b in BACKBONES if b in per_backbone]
    metrics = list(next(iter(per_backbone.values())))
    items = paired if paired is not None else per_backbone  # what is paired: items, else the seeds
    verdicts = {pair_name(a, b): {m: paired_verdict(items[a][m], items[b][m]) for m in metrics}
                for a, b in PAIRS if a in names and b in names}
    share = {}
    if set(BACKBONES) <= set(names):
        # Only a gain the evaluation can see is a yardstick: with the supervised reference not ahead of random
        # init beyond two standard errors, the share is undefined (None), not a ratio of noise.
        control = verdicts["supervised_vs_random_init"]
        share = {m: supervised_share(*(mean_sd(per_backbone[b][m])[0] for b in BACKBONES))
                 if control[m]["verdict"] == "ahead" else None for m in metrics}
    return {"verdicts": verdicts, "supervised_share": share}


def backbone_block(values: dict[str, list[float]]) -> dict:
    """One backbone's metrics: the mean under each metric's name, its sd and the per-seed values."""
    block = {}
    for metric, per_seed in values.items():
        mean, sd = mean_sd(per_seed)
        block[metric], block[f"{metric}_sd"] = mean, sd
    block["per_seed"] = {metric: [float(v) for v in per_seed] for metric, per_seed in values.items()}
    return block
