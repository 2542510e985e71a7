"""The evaluations x backbones table: means with the seeds' sd, verdicts, the supervised share, runs."""
from __future__ import annotations

import json

from pipeline.evaluation.compare import backbone_block, compare
from pipeline.evaluation.summary import markdown, rows


def _write(root, path, metrics):
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(metrics))


def test_table_rows_come_from_the_evaluations_metrics(tmp_path):
    per_seed = {"random_init": {"top1": [0.30, 0.32, 0.31]}, "pretrained": {"top1": [0.60, 0.62, 0.61]},
                "supervised": {"top1": [0.90, 0.91, 0.92]}}
    linear = {name: backbone_block(v) for name, v in per_seed.items()}
    linear.update(compare(per_seed))
    linear["protocol"] = {"seeds": [0, 1, 2]}
    _write(tmp_path, "data/linear/details.json", linear)
    _write(tmp_path, "data/coco/details.json", {"pretrained": {"bbox": {"AP": 0.1}}})  # before the reference
    table = rows(tmp_path)
    assert [r["evaluation"] for r in table] == ["linear top-1"]
    row = table[0]
    assert row["pretrained"] == "0.610 ± 0.010" and row["supervised"] == "0.910 ± 0.010"
    assert row["supervised_vs_random_init"].startswith("ahead (+0.600)")
    assert row["pretrained_vs_supervised"].startswith("behind")
    assert row["share"] == "0.50" and row["runs"] == "3 seed(s)"
    text = markdown(tmp_path)
    assert text.splitlines()[0].startswith("| evaluation | random init | pretrained | supervised |")
    assert "| linear top-1 | 0.310 ± 0.010 | 0.610 ± 0.010 | 0.910 ± 0.010 |" in text


def test_coco_probe_block_is_its_own_row(tmp_path):
    def block(base):
        per_seed = {"random_init": {"bbox_AP": [base, base + 0.01, base + 0.02]},
                    "pretrained": {"bbox_AP": [0.05, 0.06, 0.07]}, "supervised": {"bbox_AP": [0.10, 0.11, 0.12]}}
        out = {name: backbone_block(v) for name, v in per_seed.items()}
        out.update(compare(per_seed))
        return out

    coco = block(0.04)
    coco["probe"] = block(0.01)
    coco["seeds"] = [0, 1, 2]
    _write(tmp_path, "data/coco/details.json", coco)
    table = {r["evaluation"]: r for r in rows(tmp_path)}
    assert set(table) == {"COCO box AP, fine-tuned", "COCO box AP, frozen-backbone probe"}  # no segm values here
    assert table["COCO box AP, frozen-backbone probe"]["random_init"] == "0.020 ± 0.010"
    assert table["COCO box AP, fine-tuned"]["random_init"] == "0.050 ± 0.010"
    assert table["COCO box AP, frozen-backbone probe"]["runs"] == "3 seed(s)"


def test_a_skipped_evaluation_is_one_row_that_says_why(tmp_path):
    reason = "data.coco.root = data/absent: the data group 'digits' provides no COCO set"
    _write(tmp_path, "data/coco/details.json", {"status": "skipped", "reason": reason})
    table = rows(tmp_path)
    assert len(table) == 1 and table[0]["evaluation"] == "COCO detection"
    assert table[0]["pretrained"] == "skipped" and table[0]["runs"] == reason
    assert f"| COCO detection | skipped | skipped | skipped | - | - | - | - | {reason} |" in markdown(tmp_path)
