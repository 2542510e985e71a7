"""The report on synthetic recorded runs: reading them, the numbers per world, the verdicts at equal epochs and at
equal training seconds, the files, the refusals."""
from __future__ import annotations

import copy

import pytest

from pipeline.study import report as rep
from pipeline.study.runs import StudyError, StudySpec

EPOCHS = 3
CLASSES = {"embedded": 10, "embedded_many": 144}
ONE_WORLD = {"worlds": ("embedded",), "ks": ()}


def _params(name: str, seed: int, world: str, k: int = 2) -> dict:
    loss = {"median": {"name": "truncated_triplet", "variant": "median", "k": 2, "k_end": 10},
            "hardest": {"name": "truncated_triplet", "variant": "hardest", "k": 1, "k_end": 10},
            "auto": {"name": "truncated_triplet", "variant": "smoothed", "k": "auto", "k_end": "auto"},
            "triplet": {"name": "truncated_triplet", "variant": "smoothed", "k": 2, "k_end": 10},
            "k": {"name": "truncated_triplet", "variant": "smoothed", "k": k, "k_end": 10},
            }.get(name) or {"name": rep.LOSSES[name][2]["loss.name"]}
    return {"seed": seed, "loss": loss, "data": {"name": world, "num_classes": CLASSES[world]},
            "generate": {"classification": {"classes": CLASSES[world]}},
            "model": {"arch": "resnet18"}, "eval": {"knn": {"k": 200, "temperature": 0.1}, "linear": {"epochs": 20}},
            "convert": {"loader": {"order": "random"}},
            "train": {"epochs": EPOCHS, "batch_size": 128, "image_size": 32, "optimizer": "lars", "lr": 1.0,
                      "warmup_epochs": 0.5}}


def _tsv(key: str, values: list[float]) -> str:
    return f"step\t{key}\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(values))


def fake_dvc(spec: StudySpec, final: dict[str, float], noise: float = 0.01, seconds: dict[str, float] | None = None):
    """(recorded, git show) stand-ins: run <loss>/s<seed> climbs linearly from 0.20 to final[loss] + seed noise,
    taking seconds[loss] (default 10) training seconds per epoch."""
    points, runs = spec.plan()
    have, files = {}, {}
    for i, run in enumerate(runs):
        point = next(p for p in points if p.run == run.name)
        label, seed = point.label, point.seed
        k = int(label) if point.kind == "k" else 2
        target = final.get(label if point.kind == "loss" else "triplet", 0.3) + noise * (seed - 1) + 0.001 * k
        knn = [0.20 + (target - 0.20) * (e + 1) / EPOCHS for e in range(EPOCHS)]
        lin = [v + 0.02 for v in knn]
        per_epoch = (seconds or {}).get(label, 10.0)
        rev = f"{i:02d}" + "ab" * 19
        metrics = {"epochs": EPOCHS, "steps": 39 * EPOCHS, "knn_top1": knn[-1], "linear_top1": lin[-1],
                   "random_init_knn_top1": 0.20, "random_init_linear_top1": 0.22}
        have[run.name] = {"rev": rev, "params": _params(label if point.kind == "loss" else "k", seed, point.world, k),
                          "metrics": {rep.METRICS_FILE: metrics}}
        files[(rev, "knn_top1")] = _tsv("knn_top1", knn)
        files[(rev, "linear_top1")] = _tsv("linear_top1", lin)
        files[(rev, "fn_hardest")] = _tsv("fn_hardest", [0.10, 0.12, 0.15])
        files[(rev, "train_seconds")] = _tsv("train_seconds", [per_epoch * (e + 1) for e in range(EPOCHS)])
        if have[run.name]["params"]["loss"]["name"] == "truncated_triplet":
            files[(rev, "fn_selected")] = _tsv("fn_selected", [0.10, 0.11, 0.12])
    return have, files


@pytest.fixture
def dvc(monkeypatch):
    """Install fake DVC answers for a spec; returns a function (spec, finals, ...) -> the `have` dict to edit."""
    state = {}

    def install(spec, final, noise=0.01, seconds=None):
        state["have"], state["files"] = fake_dvc(spec, final, noise, seconds)
        return state["have"]

    monkeypatch.setattr(rep, "recorded_by_baseline", lambda root, rev="HEAD", num=1: [
        ("c" * 40, {}), ("b" * 40, copy.deepcopy(state["have"])), ("a" * 40, {"eff-embedded-byol-s0": {}})])
    monkeypatch.setattr(rep, "_git_show", lambda root, rev, path: state["files"].get(
        (rev, path.rsplit("/", 1)[-1].removesuffix(".tsv"))))
    return install


def test_full_study_report_per_world_with_clear_winner(dvc, tmp_path):
    spec = StudySpec(ks=(1, 2))
    dvc(spec, {"triplet": 0.40, "auto": 0.45, "median": 0.33, "hardest": 0.25, "byol": 0.30, "simclr": 0.32,
               "simsiam": 0.28, "emp_ssl": 0.31})
    points, data, baseline = rep.collect(tmp_path, spec)
    assert len(points) == 52 and len(data) == 47
    assert baseline == "b" * 40, "the newest commit holding the study's runs, never mixed with older ones"
    study = rep.summarise(points, data)
    assert list(study.worlds) == ["embedded", "embedded_many"]
    ten, many = study.worlds["embedded"], study.worlds["embedded_many"]
    assert ten.verdict == many.verdict == "holds" and ten.seconds_verdict == "holds"
    t = ten.losses["triplet"]
    assert t["final"]["knn_top1"].n == 3 and t["final"]["knn_top1"].mean == pytest.approx(0.402)
    assert t["final"]["knn_top1"].sd == pytest.approx(0.01)
    assert t["curves"]["knn_top1"][0][0] == 0.20, "epoch 0 is the random-init monitor"
    assert len(t["curves"]["knn_top1"][0]) == EPOCHS + 1
    assert ten.losses["byol"]["fn_selected"] is None and ten.losses["byol"]["fn_hardest_final"].mean == 0.15
    # k: auto is not a baseline of the claim; in the many-class world it is the reference's own runs
    assert "auto" not in {c.other for c in ten.comparisons} and {c.other for c in ten.variants} == {"auto"}
    final_knn = next(c for c in ten.variants if c.measure == "final kNN top-1")
    assert final_knn.diff == pytest.approx(0.05) and final_knn.verdict == "ahead", "k: auto minus k = 2: auto ahead"
    assert many.shared == ["auto"] and ten.shared == []
    assert ten.setup["expected_false_negatives"] == pytest.approx(12.7)
    assert many.setup["expected_false_negatives"] == pytest.approx(127 / 144)
    assert list(ten.ks) == [1, 2] and ten.ks[2]["run"] == "eff-embedded-triplet-s0"
    path = rep.write_report(study, tmp_path / "reports", "python -m pipeline.study report", "a" * 40)
    md = path.read_text()
    assert "| `embedded` | 10 | 12.7 | **holds** | **holds** |" in md
    assert "| `embedded_many` | 144 | 0.9 | **holds** | **holds** |" in md
    assert "## World `embedded_many` (144 classes)" in md
    assert "| 40.2 ± 1.0 [39.2, 41.2] |" in md  # triplet final kNN: mean ± sd [min, max] in %
    assert "`k: auto` resolves to ranks 14..22 here." in md
    assert "| truncated triplet, k: auto (false-negative-aware) | final kNN top-1 | +5.0 |" in md
    assert "resolves to the paper's ranks 2..10: its points are the reference's own runs" in md
    assert "eff-embedded-k1-s0" in md and "12.7 of a query's negatives" in md and "the paper's regime" in md
    for world in ("embedded", "embedded_many"):
        for kind in ("curves", "fn"):
            assert (tmp_path / "reports" / rep.picture(world, kind)).stat().st_size > 5000
    assert not list(tmp_path.glob(".*partial*")), "the temporary folder is removed"


def test_equal_seconds_credits_a_faster_method_that_ties_at_equal_epochs(dvc, tmp_path):
    spec = StudySpec(losses=("triplet", "emp_ssl"), **ONE_WORLD)
    # the same curve per epoch, but EMP-SSL's epochs take 4x as long
    dvc(spec, {"triplet": 0.40, "emp_ssl": 0.40}, noise=0.002, seconds={"triplet": 10.0, "emp_ssl": 40.0})
    s = rep.summarise(*rep.collect(tmp_path, spec)[:2]).worlds["embedded"]
    assert s.verdict == "is not established"
    assert s.seconds == 30.0 and s.seconds_verdict == "holds"
    # at 30 s EMP-SSL has done 3/4 of its first epoch: 0.20 + 0.75 * (0.40 - 0.20) / 3 on average
    assert s.losses["emp_ssl"]["at_seconds"]["knn_top1"].mean == pytest.approx(0.20 + 0.75 * 0.2 / 3 + 0.002 / 4,
                                                                                abs=1e-3)
    assert any(line.startswith("At equal training seconds (30 s") and "holds" in line for line in s.statement)
    assert any(line.startswith("No measured point before 30 s for EMP-SSL (its first epoch ends at 40 s)")
               for line in s.statement), s.statement
    assert rep.seconds_span(s) == pytest.approx(4.0, rel=0.01)  # 4x: the seconds axis stays linear


def test_the_seconds_axis_turns_log_when_one_method_trains_far_longer(dvc, tmp_path, monkeypatch):
    spec = StudySpec(losses=("triplet", "emp_ssl"), **ONE_WORLD)
    dvc(spec, {"triplet": 0.40, "emp_ssl": 0.60}, seconds={"triplet": 10.0, "emp_ssl": 100.0})
    s = rep.summarise(*rep.collect(tmp_path, spec)[:2]).worlds["embedded"]
    assert rep.seconds_span(s) == pytest.approx(10.0) and rep.LOG_SECONDS_SPAN < 10.0
    from matplotlib.figure import Figure
    figures, real_savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **kw: (figures.append(fig), real_savefig(fig, *a, **kw)))
    rep._plots(s, tmp_path)
    seconds_axes = [ax for ax in figures[0].axes if ax.get_xlabel().startswith("training seconds")]
    assert len(seconds_axes) == 2 and all(ax.get_xscale() == "log" for ax in seconds_axes)
    assert all(min(ax.lines[0].get_xdata()) > 0 for ax in seconds_axes), "epoch 0 (0 s) is left off the log axis"


def test_value_at_interpolates_and_refuses_outside_the_curve():
    assert rep.value_at([0.0, 10.0, 20.0], [0.2, 0.4, 0.5], 15.0) == pytest.approx(0.45)
    assert rep.value_at([0.0, 10.0], [0.2, 0.4], 10.0) == 0.4
    with pytest.raises(ValueError, match="outside"):
        rep.value_at([0.0, 10.0], [0.2, 0.4], 11.0)


def test_a_better_baseline_is_reported_as_contradicting_the_claim(dvc, tmp_path):
    spec = StudySpec(losses=("triplet", "byol"), **ONE_WORLD)
    dvc(spec, {"triplet": 0.30, "byol": 0.40})
    s = rep.summarise(*rep.collect(tmp_path, spec)[:2]).worlds["embedded"]
    assert s.verdict == "does not hold" and s.seconds_verdict == "does not hold"
    assert any("BYOL is ahead on final kNN top-1 by +10.0 points" in line for line in s.statement)
    assert any("(how fast it learns), beyond the spread: behind BYOL on kNN by 6.7 points" in line
               for line in s.statement), s.statement


def test_differences_within_the_seed_spread_are_not_a_verdict(dvc, tmp_path):
    spec = StudySpec(losses=("triplet", "simclr"), **ONE_WORLD)
    dvc(spec, {"triplet": 0.305, "simclr": 0.30}, noise=0.05)
    s = rep.summarise(*rep.collect(tmp_path, spec)[:2]).worlds["embedded"]
    assert s.verdict == "is not established"
    assert {c.verdict for c in s.comparisons} == {"within spread"}


def test_no_learning_is_stated(dvc, tmp_path):
    spec = StudySpec(losses=("triplet", "byol"), **ONE_WORLD)
    dvc(spec, {"triplet": 0.19, "byol": 0.18}, noise=0.001)
    s = rep.summarise(*rep.collect(tmp_path, spec)[:2]).worlds["embedded"]
    assert any(line.startswith("Caveat") and "no clear learning" in line for line in s.statement)


def test_a_linear_gain_without_a_knn_gain_is_stated_as_early_learning(dvc, tmp_path):
    spec = StudySpec(losses=("triplet", "byol"), **ONE_WORLD)
    have = dvc(spec, {"triplet": 0.19, "byol": 0.18}, noise=0.001)
    for run in have.values():  # the random network's linear probe far below its kNN (as in the 144-class world)
        run["metrics"][rep.METRICS_FILE]["random_init_linear_top1"] = 0.05
    s = rep.summarise(*rep.collect(tmp_path, spec)[:2]).worlds["embedded"]
    caveat = next(line for line in s.statement if line.startswith("Caveat"))
    assert "no clear learning" not in caveat and "linear top-1 gains +16.2" in caveat, caveat


def test_missing_runs_are_named_and_nothing_is_written(dvc, tmp_path):
    spec = StudySpec()
    have = dvc(spec, {})
    del have["eff-embedded-byol-s2"], have["eff-embedded_many-simsiam-s0"]
    out = tmp_path / "reports"
    with pytest.raises(StudyError, match=r"2 of the study's 45 runs are not recorded as DVC experiments of "
                                         r"commit bbbbbbb: eff-embedded_many-simsiam-s0, eff-embedded-byol-s2"):
        rep.report(tmp_path, spec, out)
    assert not out.exists()


def test_a_run_with_other_params_or_an_unequal_budget_in_its_world_is_refused(dvc, tmp_path):
    spec = StudySpec(losses=("triplet", "byol"), ks=())
    have = dvc(spec, {})
    have["eff-embedded-byol-s1"]["params"]["loss"]["name"] = "infonce"
    with pytest.raises(StudyError, match=r"eff-embedded-byol-s1 .*loss.name = 'infonce' \(expected 'byol'\)"):
        rep.collect(tmp_path, spec)
    have = dvc(spec, {})
    have["eff-embedded_many-byol-s1"]["params"]["train"]["lr"] = 0.5
    with pytest.raises(StudyError, match="eff-embedded_many-byol-s1: params 'train' differ from "
                                         "eff-embedded_many-triplet-s0's"):
        rep.collect(tmp_path, spec)


def test_an_incomplete_curve_is_refused(dvc, tmp_path):
    spec = StudySpec(losses=("triplet",), seeds=(0,), **ONE_WORLD)
    have = dvc(spec, {})
    have["eff-embedded-triplet-s0"]["metrics"][rep.METRICS_FILE]["epochs"] = 5
    with pytest.raises(StudyError, match="knn_top1 curve has 3 epochs, metrics.json says 5"):
        rep.collect(tmp_path, spec)


def test_parse_tsv():
    assert rep.parse_tsv("step\tknn_top1\n1\t0.5\n0\t0.25\n", "knn_top1", "x") == [0.25, 0.5]
    with pytest.raises(StudyError, match="x: expected a DVCLive 'knn_top1' file"):
        rep.parse_tsv("step\tloss\n0\t1\n", "knn_top1", "x")


def test_no_study_run_anywhere_is_refused(dvc, tmp_path):
    dvc(StudySpec(losses=("triplet",), seeds=(0,), **ONE_WORLD), {})
    with pytest.raises(StudyError, match="none of the study's 45 runs .* is recorded"):
        rep.collect(tmp_path, StudySpec(prefix="other"))
