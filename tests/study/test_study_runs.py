"""The study's experiment set: which runs, under which names and overrides, and how bad options fail."""
from __future__ import annotations

import pytest

from pipeline.study.runs import DEFAULT_LOSSES, WORLDS, StudyError, StudySpec, dvc_args, mismatches


def test_default_study_is_the_published_methods_by_three_seeds_in_both_worlds():
    points, runs = StudySpec().plan()
    assert len(points) == 8 * 3 * 2 == 48 and not [p for p in points if p.kind == "k"]
    assert {p.label for p in points} == set(DEFAULT_LOSSES) == \
        {"triplet", "auto", "median", "hardest", "byol", "simclr", "simsiam", "emp_ssl"}
    assert {p.world for p in points} == set(WORLDS) == {"embedded", "embedded_many"}
    by_point = {(p.world, p.label, p.seed): p.run for p in points}
    # k: auto resolves to the paper's 2..10 with 144 classes (one run), to 14..22 with 10 classes (its own run)
    assert by_point[("embedded_many", "auto", 1)] == by_point[("embedded_many", "triplet", 1)] == \
        "eff-embedded_many-triplet-s1"
    assert by_point[("embedded", "auto", 1)] == "eff-embedded-auto-s1"
    assert len(runs) == 45 and len({r.name for r in runs}) == 45


def test_runs_go_seed_by_seed_with_the_slow_method_last():
    _, runs = StudySpec().plan()
    names = [r.name for r in runs]
    assert names[0] == "eff-embedded-triplet-s0" and names[7] == "eff-embedded_many-triplet-s0"
    assert all(n.startswith("eff-embedded") and "emp_ssl" in n for n in names[-6:])
    seeds = [int(n[-1]) for n in names[:-6]]
    assert seeds == sorted(seeds), "every method of a seed before the next seed"


def test_runs_carry_their_overrides_and_the_params_they_must_record():
    _, runs = StudySpec(epochs=6, ks=(5,)).plan()
    run = {r.name: r for r in runs}
    assert run["eff-embedded_many-median-s1"].overrides == (
        "loss=median", "data=embedded_many", "seed=1", "train.epochs=6", "train.monitor_every=1")
    assert run["eff-embedded-k5-s0"].overrides == ("loss=truncated_triplet", "loss.k=5", "data=embedded", "seed=0",
                                                   "train.epochs=6", "train.monitor_every=1")
    assert run["eff-embedded-k5-s0"].expect == {"loss.name": "truncated_triplet", "loss.variant": "smoothed",
                                                "loss.k": 5, "data.name": "embedded", "seed": 0, "train.epochs": 6}
    assert run["eff-embedded-auto-s0"].expect["loss.k"] == "auto"
    # Only pretrain (and what it depends on) is reproduced, in a temporary copy, under the run's name.
    assert dvc_args(run["eff-embedded_many-median-s1"]) == [
        "exp", "run", "--temp", "-n", "eff-embedded_many-median-s1", "-S", "loss=median", "-S", "data=embedded_many",
        "-S", "seed=1", "-S", "train.epochs=6", "-S", "train.monitor_every=1", "pretrain"]


def test_subsets_and_extra_overrides():
    spec = StudySpec.from_args("triplet,byol", 1, "", 2, ["train.lr=0.5"], "tiny", "embedded")
    points, runs = spec.plan()
    assert [r.name for r in runs] == ["tiny-embedded-triplet-s0", "tiny-embedded-byol-s0"] and len(points) == 2
    assert runs[1].overrides[-1] == "train.lr=0.5" and runs[1].expect["train.lr"] == 0.5
    # Without the reference loss, k = 2 gets a run of its own; the k = 2 point of a sweep shares the reference's.
    _, runs = StudySpec(losses=("byol",), seeds=(0,), ks=(2,), worlds=("embedded",)).plan()
    assert [r.name for r in runs] == ["eff-embedded-byol-s0", "eff-embedded-k2-s0"]
    points, runs = StudySpec(losses=("triplet",), seeds=(0,), ks=(2, 3), worlds=("embedded",)).plan()
    assert len(points) == 3 and [r.name for r in runs] == ["eff-embedded-triplet-s0", "eff-embedded-k3-s0"]


@pytest.mark.parametrize("kwargs, message", [
    ({"losses": ("triplet", "moco")}, "moco"),
    ({"worlds": ("imagenet",)}, "worlds \\['imagenet'\\]"),
    ({"extra": ("data=imagenet",)}, "-S data=imagenet"),
    ({"extra": ("train.steps=100",)}, "-S train.steps=100"),
    ({"seeds": ()}, "at least one seed"),
    ({"ks": (0, 2)}, "k must be >= 1"),
    ({"epochs": 0}, "epochs = 0"),
    ({"extra": ("seed=3",)}, "-S seed=3"),
    ({"extra": ("train.lr",)}, "expected key=value"),
    ({"prefix": "a b"}, "prefix"),
])
def test_bad_options_are_refused_naming_the_value(kwargs, message):
    with pytest.raises(StudyError, match=message):
        StudySpec(**kwargs)


def test_ks_must_be_integers():
    with pytest.raises(StudyError, match="ks = '1,two'"):
        StudySpec.from_args(None, None, "1,two", None, None, "eff")


def test_a_stop_file_ends_the_study_before_the_next_run_and_is_removed(tmp_path, monkeypatch):
    from pipeline.study import runs

    (tmp_path / runs.STOP_FILE).parent.mkdir(parents=True)
    (tmp_path / runs.STOP_FILE).touch()
    monkeypatch.setattr(runs, "recorded", lambda root: {})  # nothing recorded yet (no DVC here)
    lines = []
    spec = StudySpec(losses=("byol",), seeds=(0,), worlds=("embedded",))
    assert runs.run_study(tmp_path, spec, echo=lines.append) == []
    STOP_FILE = runs.STOP_FILE
    assert lines == [f"[1/1] eff-embedded-byol-s0: {STOP_FILE} found: stopping before this run "
                     "(run the study again to resume)"]
    assert not (tmp_path / STOP_FILE).exists()


def test_mismatches_name_the_key_and_both_values():
    params = {"seed": 1, "loss": {"name": "byol"}, "train": {"epochs": 4}}
    assert mismatches(params, {"seed": 1, "loss.name": "byol", "train.epochs": 4}) == []
    assert mismatches(params, {"train.epochs": 6, "loss.k": 2}) == [
        "train.epochs = 4 (expected 6)", "loss.k missing (expected 2)"]


def test_saved_runs_are_read_back_by_another_clone(tmp_path):
    import subprocess

    from pipeline.study.runs import load_runs, save_runs

    def git(cwd, *args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                              capture_output=True, text=True).stdout.strip()

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "f").write_text("base")
    git(repo, "add", "f")
    git(repo, "commit", "-qm", "base")
    git(repo, "clone", "-q", str(repo), str(tmp_path / "other"))  # a clone made before any experiment
    base = git(repo, "rev-parse", "HEAD")
    for name in ("eff-embedded-byol-s0", "unrelated"):  # what DVC does: a commit on the baseline, under refs/exps
        (repo / "f").write_text(name)
        git(repo, "add", "f")
        tree = git(repo, "write-tree")
        commit = git(repo, "commit-tree", tree, "-p", base, "-m", name)
        git(repo, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/{name}", commit)
        git(repo, "checkout", "-q", "f")
    spec = StudySpec(losses=("byol",), seeds=(0,), worlds=("embedded",))
    bundle, n = save_runs(repo, spec)
    assert n == 1 and bundle.is_file()
    (tmp_path / "other/reports").mkdir()
    (tmp_path / "other/reports" / bundle.name).write_bytes(bundle.read_bytes())
    assert load_runs(tmp_path / "other") == 1
    refs = git(tmp_path / "other", "for-each-ref", "--format=%(refname)", "refs/exps").split()
    assert refs == [f"refs/exps/{base[:2]}/{base[2:]}/eff-embedded-byol-s0"]
    assert load_runs(tmp_path / "other") == 0, "idempotent: nothing left to fetch"
    lines = []
    (tmp_path / "third").mkdir()
    git(tmp_path / "third", "init", "-q")  # a clone without the commit the runs start from
    (tmp_path / "third/reports").mkdir()
    (tmp_path / "third/reports" / bundle.name).write_bytes(bundle.read_bytes())
    assert load_runs(tmp_path / "third", echo=lines.append) == 0 and "not read" in lines[0]
    with pytest.raises(StudyError, match="no experiment of the study"):
        save_runs(repo, StudySpec(losses=("simclr",), seeds=(0,), worlds=("embedded",)))


def test_only_finished_runs_count_as_recorded(tmp_path, monkeypatch):
    """`dvc exp show` lists a run whose process was killed (or is still running) like a finished one, under the
    commit it started from; only a finished run has its ref, so only it is skipped on resume and reported."""
    import subprocess

    from pipeline import dvc_cli
    from pipeline.study import runs

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("commit", "-q", "--allow-empty", "-m", "base")
    base = git("rev-parse", "HEAD")
    done = git("commit-tree", git("write-tree"), "-p", base, "-m", "finished run")
    git("update-ref", f"refs/exps/{base[:2]}/{base[2:]}/eff-embedded-byol-s0", done)
    started = git("commit-tree", git("write-tree"), "-p", base, "-m", "killed run's starting commit")
    data = {"params": {"params.yaml": {"data": {"seed": 0}}}, "metrics": {}}
    shown = [{"rev": base, "experiments": [{"revs": [
        {"name": "eff-embedded-byol-s0", "rev": done, "data": data},
        {"name": "eff-embedded-simclr-s0", "rev": started, "data": data}]}]}]
    monkeypatch.setattr(dvc_cli, "dvc_json", lambda root, *args: shown)
    assert runs.finished_experiments(tmp_path) == {"eff-embedded-byol-s0": done}
    assert set(runs.recorded(tmp_path)) == {"eff-embedded-byol-s0"}
