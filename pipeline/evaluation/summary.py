"""One table of every evaluation x the three backbones, with the seeds' spread and the verdicts
(docs/evaluation.md): what the README shows and the Prefect run report embeds.

    python -m pipeline.evaluation.summary      # markdown, from data/{pretrain,linear,reid,coco}/metrics.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .compare import BACKBONES, PAIRS as PAIR_ORDER, mean_sd, pair_name

# (label, metrics file, metric key): the key names the per-seed values and the verdicts of every backbone block.
ROWS = (
    ("linear top-1", "data/linear/metrics.json", "top1"),
    ("SYSU-30k mAP", "data/reid/metrics.json", "mAP"),
    ("SYSU-30k rank-1", "data/reid/metrics.json", "rank1"),
    ("COCO box AP", "data/coco/metrics.json", "bbox_AP"),
    ("COCO mask AP", "data/coco/metrics.json", "segm_AP"),
)
PAIRS = tuple(pair_name(a, b) for a, b in PAIR_ORDER)


def _value(mean: float, sd: float | None) -> str:
    return f"{mean:.3f}" if sd is None else f"{mean:.3f} ± {sd:.3f}"


def _verdict(v: dict) -> str:
    return f"{v['verdict']} ({v['difference']:+.3f})"


def rows(root: Path = Path(".")) -> list[dict]:
    """One dict per evaluation with its three backbones, the verdicts, the supervised share and the seeds;
    evaluations whose metrics are missing or predate the supervised reference are left out."""
    out = []
    for label, path, key in ROWS:
        file = root / path
        if not file.is_file():
            continue
        m = json.loads(file.read_text())
        if not all(b in m for b in BACKBONES) or "verdicts" not in m:
            continue
        row = {"evaluation": label, **{b: _value(*mean_sd(m[b]["per_seed"][key])) for b in BACKBONES}}
        row.update({pair: _verdict(m["verdicts"][pair][key]) for pair in PAIRS})
        share = m.get("supervised_share", {}).get(key)
        row["share"] = "n/a" if share is None else f"{share:.2f}"
        protocol = m.get("protocol", {})
        seeds = protocol.get("seeds", m.get("seeds", []))
        row["runs"] = (f"{len(seeds)} seed(s)" if protocol.get("compared") != "per query"
                       else f"1 run, {m['verdicts'][PAIRS[0]][key]['n']} queries paired")
        out.append(row)
    return out


def markdown(root: Path = Path(".")) -> str:
    head = ("| evaluation | random init | pretrained | supervised | pretrained vs random | supervised vs random | "
            "pretrained vs supervised | share of supervised gain | runs |")
    lines = [head, "|" + "---|" * 9]
    for r in rows(root):
        lines.append(f"| {r['evaluation']} | {r['random_init']} | {r['pretrained']} | {r['supervised']} | "
                     f"{r['pretrained_vs_random_init']} | {r['supervised_vs_random_init']} | "
                     f"{r['pretrained_vs_supervised']} | {r['share']} | {r['runs']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")))
