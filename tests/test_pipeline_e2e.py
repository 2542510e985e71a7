"""End to end, as a new user would: a fresh copy of the project, `dvc repro`, experiments, a corrupted file.

Runs the real DVC CLI in a temporary git repository holding the project's files, with the embedded
dataset shrunk so that the whole module takes about a minute.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from small_project import copy_project, sh

pytestmark = pytest.mark.slow


def _exp_loss_param(project: Path, name: str, key: str) -> list:
    """`loss.<key>` of the experiments called `name`, as `dvc exp show --json` lists them."""
    shown = json.loads(sh(project, "dvc", "exp", "show", "--json").stdout)
    return [run["data"]["params"]["params.yaml"]["data"]["loss"][key]
            for rev in shown for exp in (rev.get("experiments") or []) for run in exp["revs"]
            if run.get("name") == name]


@pytest.fixture(scope="module")
def project(built_small_project, tmp_path_factory) -> Path:
    """A fresh git repository with the project's files and a smaller embedded dataset, after `dvc repro`."""
    return copy_project(built_small_project, tmp_path_factory.mktemp("clone") / "project")


def test_repro_runs_every_stage_and_writes_outputs(project):
    summary = json.loads((project / "data/validated/summary.json").read_text())
    assert summary["success"] is True
    manifests = {p.name for p in (project / "data/validated/manifests").iterdir()}
    assert {"classification.csv", "sysu.csv", "coco_images.csv", "coco_annotations.csv"} <= manifests
    assert (project / "data/reports/validate/data_docs/index.html").is_file()
    assert len(list((project / "data/beton").glob("*.beton"))) == 5
    metrics = json.loads((project / "data/pretrain/metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["random_init_knn_top1"] is not None
    assert (project / "data/pretrain/backbone.pt").is_file()
    assert (project / "dvc.lock").is_file()


def test_metrics_list_results_only_and_the_exp_show_view_fits_140_columns(project):
    shown = json.loads(sh(project, "dvc", "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]

    def keys(node, prefix=""):
        for k, v in node.items():
            yield from keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    flat = [f"{path}:{k}" for path, f in files.items() for k in keys(f.get("data", {}))]
    assert not [k for k in flat if any(w in k for w in ("protocol", "per_seed", "tables.", "_sd", "final_loss."))], flat
    assert len(flat) < 90, f"{len(flat)} metrics listed"  # 104, settings and bookkeeping included, before
    view = sh(project, "make", "-s", "exp-show", extra_env={"COLUMNS": "140"}).stdout
    lines = view.splitlines()
    assert max(len(line) for line in lines) <= 140, view
    for column in ("Experiment", "method", "loss.k", "knn_top1", "pretrained.top1", "pretrained.mAP"):
        assert column in lines[1], lines[1]


def test_second_repro_runs_only_the_scan_listing(project):
    # scan always runs (it lists the dataset folders: DVC cannot hash an empty one); its listing is unchanged,
    # so no other stage runs.
    out = sh(project, "dvc", "repro").stdout
    assert re.findall(r"Running stage '([^']+)'", out) == ["scan"]
    assert "Stage 'validate' didn't change, skipping" in out


def test_pretrain_checkpoint_survives_a_forced_rerun_and_temp_experiments_skip_pretrain(project):
    # DVC deletes a stage's outputs before running it; the checkpoint is not one, so the finished run resumes
    # from it and re-exports the same backbone: the lock, and so `dvc status`, are unchanged.
    lock = (project / "dvc.lock").read_text()
    proc = sh(project, "dvc", "repro", "-f", "-s", "pretrain")
    assert "resumed from" in proc.stdout + proc.stderr
    assert (project / "dvc.lock").read_text() == lock
    assert json.loads(sh(project, "dvc", "status", "--json").stdout) == {"scan": ["always changed"]}
    # A temporary copy has no checkpoint; that must not make pretrain stale for a downstream experiment.
    out = sh(project, "dvc", "exp", "run", "--temp", "-n", "coco_seed3", "-S", "eval.coco.seed=3",
             "coco_finetune").stdout
    assert "Stage 'pretrain' didn't change, skipping" in out
    assert "Running stage 'coco_finetune'" in out


def test_exp_run_with_an_invalid_k_fails_naming_the_key(project):
    proc = sh(project, "dvc", "exp", "run", "-S", "loss.k=0", check=False)
    assert proc.returncode != 0
    assert "loss.k = 0" in proc.stdout + proc.stderr


def test_exp_run_with_k3_is_listed_and_reruns_no_data_stage(project):
    # Up to linear_eval: reid_eval and coco_finetune would add half a minute (check_params is not on its path).
    out = sh(project, "dvc", "exp", "run", "-n", "k3", "-S", "loss.k=3", "linear_eval").stdout
    assert "Running stage 'pretrain'" in out and "Running stage 'linear_eval'" in out
    for stage in ("generate", "validate", "convert"):
        assert f"Running stage '{stage}'" not in out
    assert _exp_loss_param(project, "k3", "k") == [3]


def test_exp_run_switches_a_config_group(project):
    # Up to check_params only: the composition is what is tested; the k3 experiment above trains.
    out = sh(project, "dvc", "exp", "run", "-n", "median", "-S", "loss=median", "check_params").stdout
    assert "Running stage 'check_params'" in out and "Running stage 'pretrain'" not in out
    assert _exp_loss_param(project, "median", "variant") == ["median"]
    assert _exp_loss_param(project, "median", "name") == ["truncated_triplet"]


def test_garbage_jpeg_stops_validate_naming_the_file(project):
    victim = sorted((project / "data/embedded/imagenet/val").rglob("*.jpg"))[0]
    original = victim.read_bytes()
    victim.write_bytes(b"garbage" * 100)
    try:
        proc = sh(project, "dvc", "repro", check=False)
        rel = victim.relative_to(project / "data/embedded/imagenet").as_posix()
        assert proc.returncode != 0
        assert rel in proc.stderr and "decodes" in proc.stderr
        assert not (project / "data/validated/summary.json").exists()
        assert victim.read_bytes() == b"garbage" * 100  # the user's file is left as it was
    finally:
        victim.write_bytes(original)


def test_dvc_reruns_validate_when_an_empty_class_folder_appears(project):
    """DVC cannot hash an empty folder; the always-run `scan` listing makes the change visible."""
    sh(project, "dvc", "repro", "validate")
    out = sh(project, "dvc", "repro", "validate").stdout
    assert "Running stage 'scan'" in out and "Running stage 'validate'" not in out  # nothing changed
    zebra = project / "data/embedded/imagenet/train/zebra"
    zebra.mkdir()
    try:
        proc = sh(project, "dvc", "repro", "validate", check=False)
        assert proc.returncode != 0
        assert "Running stage 'validate'" in proc.stdout
        assert "zebra" in proc.stdout + proc.stderr
    finally:
        zebra.rmdir()

def test_exp_run_keeps_a_damaged_and_an_added_file_and_quarantines_the_damaged_one(project):
    """`dvc exp run` force-checks-out cached outputs before it runs; the generated dataset is not cached
    (docs/data-safety.md), so the user's damage and additions survive and validation sees them. Last in
    the module: it leaves the quarantine experiment applied in the workspace."""
    root = project / "data/embedded/imagenet"
    class_dir = sorted(p for p in (root / "train").iterdir() if p.is_dir())[0]
    victim, source = sorted(class_dir.glob("*.jpg"))[:2]
    added = class_dir / "added_by_user.jpg"
    damaged = b"garbage" * 100
    original = victim.read_bytes()
    victim.write_bytes(damaged)
    added.write_bytes(source.read_bytes())
    try:
        proc = sh(project, "dvc", "exp", "run", "-n", "quarantine", "-S", "validate.on_error=quarantine",
                  "convert")
        out = proc.stdout + proc.stderr
        rel, added_rel = (p.relative_to(root).as_posix() for p in (victim, added))
        assert "differs from what generate wrote" in out and rel in out and added_rel in out
        assert victim.read_bytes() == damaged and added.read_bytes() == source.read_bytes()
        quarantined = (project / "data/validated/quarantine.csv").read_text()
        assert rel in quarantined and "decodes" in quarantined
        listed = (project / "data/validated/manifests/classification.csv").read_text()
        assert added_rel in listed and rel not in listed
    finally:
        victim.write_bytes(original)
        added.unlink(missing_ok=True)


def _data_hashes(project: Path) -> dict:
    """What dvc.lock records of the generated data and the manifests validated from them."""
    from ruamel.yaml import YAML

    stages = YAML(typ="safe").load((project / "dvc.lock").read_text())["stages"]
    outs = {o["path"]: o.get("md5") for o in stages["generate"]["outs"]}
    outs.update({o["path"]: o.get("md5") for o in stages["validate"]["outs"] if "manifests" in o["path"]})
    return outs


def _docs_status(project: Path) -> set[str]:
    html = (project / "data/reports/validate/data_docs/index.html").read_text()
    return set(re.findall(r"'_validation_success_text': '(\w+)'", html))


def test_restore_data_regenerates_damaged_data_and_data_docs_follow_the_result(project):
    sh(project, "git", "checkout", "--", "params.yaml")  # the quarantine experiment above is applied: undo it
    sh(project, "dvc", "repro")
    lock = _data_hashes(project)
    victim = sorted((project / "data/embedded/imagenet/val").rglob("*.jpg"))[0]
    victim.write_bytes(b"garbage" * 100)
    failed = sh(project, "dvc", "repro", check=False)
    assert failed.returncode != 0 and "Failed" in _docs_status(project)  # the Data Docs show the failure
    out = sh(project, "make", "-s", "restore-data").stdout
    assert "modified 1" in out and "moved to data/damaged/imagenet-" in out
    assert list((project / "data/damaged").glob("imagenet-*/val/*/" + victim.name)), "the damaged copy is kept"
    assert victim.read_bytes()[:2] == b"\xff\xd8", "regenerated as it was"
    assert _data_hashes(project) == lock, "the pristine data's hashes, not the damaged ones"
    assert _docs_status(project) == {"Success"}
    # The Data Docs are cached with the result they show: a validation DVC restores brings its own back.
    shutil.rmtree(project / "data/reports/validate")
    sh(project, "dvc", "checkout", "validate")
    assert _docs_status(project) == {"Success"}
