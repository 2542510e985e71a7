"""Datasets a data group does not provide are off, not faked: nothing is generated for them, validation leaves
them out and says why, and the evaluations that need them record `status: skipped` with the reason (never
numbers measured on another dataset)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import config
from pipeline.config import ABSENT_ROOT, ParamsError, compose, validate_params
from pipeline.stages import coco_finetune, generate, reid_eval, validate

OWN = ["data.name=digits", "data.classification.root=/somewhere/digits", f"data.sysu.root={ABSENT_ROOT}",
       f"data.coco.root={ABSENT_ROOT}"]


def _params(*overrides: str):
    return validate_params(compose(list(overrides)))


def test_the_absent_root_marks_a_set_off_and_the_reason_names_key_and_group():
    p = _params(*OWN)
    assert not p.data.sysu.provided and not p.data.coco.provided
    assert p.data.skipped_reason("sysu") == ("data.sysu.root = data/absent: the data group 'digits' provides no "
                                             "SYSU-30k set")
    default = _params()
    assert default.data.sysu.provided and default.data.skipped_reason("coco") is None
    assert (config.REPO / ABSENT_ROOT).is_dir(), "DVC depends on the folder: it is committed"


def test_a_group_without_classification_data_is_refused():
    with pytest.raises(ParamsError, match="data.classification.root = data/absent: every data group needs"):
        _params(f"data.classification.root={ABSENT_ROOT}")


def test_generate_writes_only_the_sets_the_group_reads_from_the_generated_folder():
    assert generate.used_sets(_params()) == {"imagenet": True, "sysu30k": True, "coco": True}
    assert generate.used_sets(_params(*OWN)) == {"imagenet": False, "sysu30k": False, "coco": False}
    mixed = _params("data.classification.root=/mine", "data.sysu.root=data/embedded/sysu30k")
    assert generate.used_sets(mixed) == {"imagenet": False, "sysu30k": True, "coco": True}


def test_validation_checks_only_what_the_group_provides_and_says_why_not_the_rest():
    checked, off = validate.checked_datasets(_params(*OWN))
    assert checked == ["classification"]
    assert set(off) == {"sysu", "coco"} and "provides no COCO set" in off["coco"]
    checked, off = validate.checked_datasets(_params("validate.datasets=[classification,coco]"))
    assert checked == ["classification", "coco"] and off == {"sysu": "not in validate.datasets "
                                                                     "['classification', 'coco']"}


@pytest.mark.parametrize("stage, out, picture", [(reid_eval, "data/reid", "top5.png"),
                                                 (coco_finetune, "data/coco", "predictions.png")])
def test_an_evaluation_without_its_dataset_records_skipped_and_needs_no_backbone(stage, out, picture, tmp_path,
                                                                                  monkeypatch):
    config.write_composed(tmp_path / "params.yaml", OWN)
    monkeypatch.chdir(tmp_path)  # no backbone, no manifests, no .beton here: none is opened
    stage.main()
    metrics = json.loads((tmp_path / out / "metrics.json").read_text())
    assert metrics["status"] == "skipped" and "the data group 'digits' provides no" in metrics["reason"]
    assert set(metrics) == {"status", "reason"}, "no number that could pass for a measurement"
    assert (tmp_path / out / picture).stat().st_size > 1000
    assert not list(Path(tmp_path / out).glob("*.tmp"))


def test_the_absent_root_is_recognised_however_it_is_written():
    absent = (config.REPO / ABSENT_ROOT).resolve()
    assert not _params(*OWN[:3], f"data.sysu.root={absent}").data.sysu.provided


def test_under_torchrun_only_rank_zero_writes_the_skipped_record(tmp_path, monkeypatch):
    from pipeline.stages._common import skipped

    monkeypatch.setenv("RANK", "1")
    assert skipped("coco", _params(*OWN), tmp_path / "coco/metrics.json", tmp_path / "coco/predictions.png")
    assert not (tmp_path / "coco").exists()
