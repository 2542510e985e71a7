"""One table of every evaluation x the three backbones, with the seeds' spread and the verdicts
(docs/evaluation.md): what the README shows and the Prefect run report embeds.

    python -m pipeline.evaluation.summary      # markdown, from data/{linear,reid,coco}/details.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .compare import BACKBONES, PAIRS as PAIR_ORDER, mean_sd, pair_name

# (label, metrics file, block, metric key): the block (None: the top level) holds the backbones and the verdicts;
# the key names the per-seed values and the verdicts of every backbone.
ROWS = (
    ("linear top-1", "data/linear/details.json", None, "top1"),
    ("SYSU-30k mAP", "data/reid/details.json", None, "mAP"),
    ("SYSU-30k rank-1", "data/reid/details.json", None, "rank1"),
    ("COCO box AP, fine-tuned", "data/coco/details.json", None, "bbox_AP"),
    ("COCO mask AP, fine-tuned", "data/coco/details.json", None, "segm_AP"),
    ("COCO box AP, frozen-backbone probe", "data/coco/details.json", "probe", "bbox_AP"),
)
PAIRS = tuple(pair_name(a, b) for a, b in PAIR_ORDER)
# The evaluation a metrics file holds, for the one row that says it was skipped.
EVALUATION = {"data/reid/details.json": "SYSU-30k retrieval", "data/coco/details.json": "COCO detection"}


def _value(mean: float, sd: float | None) -> str:
    return f"{mean:.3f}" if sd is None else f"{mean:.3f} ± {sd:.3f}"


def _verdict(v: dict) -> str:
    return f"{v['verdict']} ({v['difference']:+.3f})"


def rows(root: Path = Path(".")) -> list[dict]:
    """One dict per evaluation with its three backbones, the verdicts, the supervised share and the seeds;
    evaluations whose metrics are missing or predate the supervised reference are left out, and an evaluation
    the data group has no dataset for is one row that says so."""
    out, skipped = [], set()
    for label, path, block, key in ROWS:
        file = root / path
        if not file.is_file():
            continue
        top = json.loads(file.read_text())
        if top.get("status") == "skipped":
            if path not in skipped:
                skipped.add(path)
                out.append({"evaluation": EVALUATION.get(path, label),
                            **{b: "skipped" for b in BACKBONES}, **{pair: "-" for pair in PAIRS}, "share": "-",
                            "runs": top.get("reason", "skipped")})
            continue
        m = top.get(block, {}) if block else top
        if not all(b in m and key in m[b].get("per_seed", {}) for b in BACKBONES) or "verdicts" not in m:
            continue
        row = {"evaluation": label, **{b: _value(*mean_sd(m[b]["per_seed"][key])) for b in BACKBONES}}
        row.update({pair: _verdict(m["verdicts"][pair][key]) for pair in PAIRS})
        share = m.get("supervised_share", {}).get(key)
        row["share"] = "n/a" if share is None else f"{share:.2f}"
        protocol = top.get("protocol", {})
        seeds = protocol.get("seeds", top.get("seeds", []))
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
