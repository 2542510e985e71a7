"""The study's report from its recorded DVC experiments: reports/efficiency.md and its PNGs.

`collect()` reads the runs back from DVC: `dvc exp show --json` lists each experiment with its params and
its final metrics (data/pretrain/metrics.json), and the per-epoch DVCLive curves
(data/pretrain/live/plots/metrics/*.tsv, `cache: false`, so committed in each experiment) are read from
the experiment's commit. `summarise()` is pure (tests feed it synthetic runs) and `write_report()` draws
and writes everything to a temporary folder first, so a failed report never leaves half a report.
"""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .runs import LOSSES, REFERENCE, Point, StudyError, StudySpec, lookup, mismatches, recorded_by_baseline

METRICS_FILE = "data/pretrain/metrics.json"
CURVES_DIR = "data/pretrain/live/plots/metrics"
LOOKBACK = 20  # first-parent commits searched for the study's baseline
CURVE_KEYS = ("knn_top1", "linear_top1", "loss", "fn_selected", "fn_hardest", "train_seconds")
REPORT = "efficiency.md"
PICTURE_KINDS = ("curves", "fn", "k")
TOP1 = (("knn_top1", "kNN"), ("linear_top1", "linear"))
# The budget must be equal: the runs of one world must agree on these params groups (the study sets only seed,
# method, loss and the data group).
SAME_FOR_ALL = ("train", "model", "eval.knn", "eval.linear", "convert.loader", "data", "generate")
# Not baselines of the claim: the paper's own loss with false-negative-aware ranks is compared with k = 2 apart.
VARIANTS_OF_REFERENCE = ("auto",)


def picture(world: str, kind: str) -> str:
    return f"efficiency_{world}_{kind}.png"


@dataclass
class RunData:
    name: str
    rev: str
    params: dict
    metrics: dict  # data/pretrain/metrics.json
    curves: dict[str, list[float] | None]  # key -> one value per epoch (epoch 1..N), None if not logged


# --- reading DVC ----------------------------------------------------------------------------------------
def _git_show(root: Path, rev: str, path: str) -> str | None:
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def parse_tsv(text: str, key: str, where: str) -> list[float]:
    """A DVCLive metric file (`step<TAB>key` header, one row per step) -> values in step order."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].split("\t")[-1] != key:
        raise StudyError(f"{where}: expected a DVCLive '{key}' file (header 'step\\t{key}'), got "
                         f"{lines[0] if lines else 'an empty file'!r}")
    rows = []
    for ln in lines[1:]:
        cols = ln.split("\t")
        try:
            rows.append((int(cols[0]), float(cols[-1])))
        except (ValueError, IndexError):
            raise StudyError(f"{where}: unreadable row {ln!r}") from None
    rows.sort()
    return [v for _, v in rows]


def collect(root: Path, spec: StudySpec, rev: str = "HEAD",
            lookback: int = LOOKBACK) -> tuple[list[Point], dict[str, RunData], str]:
    """Every point of `spec`, the recorded run behind it, and the baseline commit they were recorded on.

    The baseline is the newest of `rev` and its `lookback` - 1 first-parent ancestors that holds any of
    the study's runs (committing the report after the study must not lose them); runs are never mixed
    across baselines. StudyError names what is missing or wrong.
    """
    points, runs = spec.plan()
    names = {r.name for r in runs}
    found = recorded_by_baseline(root, rev, lookback)
    baseline, have = next(((b, h) for b, h in found if names & set(h)), (None, {}))
    where = f"{rev} or the {lookback - 1} commits before it" if lookback > 1 else rev
    if baseline is None:
        raise StudyError(
            f"none of the study's {len(runs)} runs ({runs[0].name}, ...) is recorded as a DVC experiment of "
            f"{where}.\nRun the study first: `python -m pipeline.study run` with the same options, or point "
            "--rev at the commit it was run on (`dvc exp list -A` shows where experiments are).")
    missing = [r.name for r in runs if r.name not in have]
    if missing:
        raise StudyError(
            f"{len(missing)} of the study's {len(runs)} runs are not recorded as DVC experiments of commit "
            f"{baseline[:7]}: {', '.join(missing)}.\nRun them with `python -m pipeline.study run` and the same "
            "options on that commit (it runs only the missing ones), or report on another baseline with "
            "--rev <commit> (`dvc exp list -A` shows where experiments are).")
    data: dict[str, RunData] = {}
    problems = []
    for run in runs:
        rec = have[run.name]
        bad = mismatches(rec["params"], run.expect)
        if bad:
            problems.append(f"{run.name} ({rec['rev'][:7]}): {'; '.join(bad)}")
            continue
        metrics = rec["metrics"].get(METRICS_FILE)
        if not metrics:
            problems.append(f"{run.name} ({rec['rev'][:7]}): no {METRICS_FILE} recorded")
            continue
        curves = {}
        for key in CURVE_KEYS:
            text = _git_show(root, rec["rev"], f"{CURVES_DIR}/{key}.tsv")
            curves[key] = parse_tsv(text, key, f"{run.name}:{CURVES_DIR}/{key}.tsv") if text else None
        data[run.name] = RunData(run.name, rec["rev"], rec["params"], metrics, curves)
    if problems:
        raise StudyError("recorded runs that do not match the study:\n  " + "\n  ".join(problems)
                         + "\nre-run them with `python -m pipeline.study run --force` and the same options")
    check_runs(data)
    return points, data, baseline


def check_runs(data: dict[str, RunData]) -> None:
    """Every run complete (curves as long as its epochs, ending at its final metrics) and at equal budget."""
    problems = []
    for r in data.values():
        epochs = r.metrics.get("epochs")
        for key in [k for k, _ in TOP1] + (["train_seconds"] if r.curves.get("train_seconds") else []):
            curve = r.curves.get(key)
            if not curve or len(curve) != epochs:
                problems.append(f"{r.name}: {key} curve has {len(curve or [])} epochs, metrics.json says {epochs}")
            elif key != "train_seconds" and (r.metrics.get(key) is None
                                             or not math.isclose(curve[-1], r.metrics[key], abs_tol=1e-9)):
                problems.append(f"{r.name}: {key} curve ends at {curve[-1]}, metrics.json has {r.metrics.get(key)}")
    first: dict = {}
    for r in data.values():
        ref = first.setdefault(lookup(r.params, "data.name"), r)
        for group in SAME_FOR_ALL:
            if lookup(r.params, group) != lookup(ref.params, group):
                problems.append(f"{r.name}: params '{group}' differ from {ref.name}'s (the runs of one world must "
                                "share everything but seed and loss)")
    if problems:
        raise StudyError("the recorded runs cannot be compared:\n  " + "\n  ".join(problems))


# --- the numbers ------------------------------------------------------------------------------------------
@dataclass
class Stats:
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def sd(self) -> float:
        """Sample standard deviation over seeds (nan for one seed: no spread measured)."""
        if self.n < 2:
            return float("nan")
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)


@dataclass
class Comparison:
    other: str
    measure: str  # e.g. "final kNN"
    diff: float  # reference minus other, fraction
    se: float  # standard error of the difference (nan with a single seed on either side)

    @property
    def verdict(self) -> str:
        if math.isnan(self.se):
            return "no spread (one seed)"
        if self.diff > 2 * self.se:
            return "ahead"
        if self.diff < -2 * self.se:
            return "behind"
        return "within spread"


@dataclass
class Summary:
    """One world's numbers: per loss its runs, finals, areas and values at the common training time."""
    world: str
    losses: dict[str, dict]  # label -> {"runs", "final": {key: Stats}, "auc", "at_seconds", "curves", ...}
    ks: dict[int, dict]  # k -> {"run", "final": {key: value}, "fn_selected", "fn_hardest"}
    comparisons: list[Comparison]  # reference minus each baseline of the claim
    verdict: str  # at equal epochs
    seconds_verdict: str  # at equal training seconds
    statement: list[str]
    setup: dict
    variants: list[Comparison] = field(default_factory=list)  # k: auto minus k = 2
    shared: list[str] = field(default_factory=list)  # variant labels measured by the reference's own runs
    seconds: float | None = None  # the common training time (s) every run reached


@dataclass
class Study:
    worlds: dict[str, Summary]
    runs: list[dict]


def _curve_with_init(r: RunData, key: str) -> list[float]:
    """Top-1 per epoch with epoch 0 = the random-init monitor (the same weights the run started from)."""
    return [r.metrics[f"random_init_{key}"]] + list(r.curves[key])


def _seconds_with_init(r: RunData) -> list[float] | None:
    """Cumulative training seconds per epoch (monitor excluded), 0 at epoch 0; None for runs that lack them."""
    return [0.0] + list(r.curves["train_seconds"]) if r.curves.get("train_seconds") else None


def value_at(xs: list[float], ys: list[float], x: float) -> float:
    """Linear interpolation of the curve (xs ascending) at x, within [xs[0], xs[-1]]."""
    if not xs[0] <= x <= xs[-1]:
        raise ValueError(f"{x} lies outside the curve's {xs[0]}..{xs[-1]}")
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


def _last(curve: list[float] | None) -> float | None:
    return curve[-1] if curve else None


def summarise(points: list[Point], data: dict[str, RunData]) -> Study:
    """The numbers of every world of the study (points of one world are summarised together)."""
    worlds = {}
    for world in dict.fromkeys(p.world for p in points):
        mine = [p for p in points if p.world == world]
        worlds[world] = summarise_world(world, mine, {p.run: data[p.run] for p in mine})
    runs = [{"name": r.name, "rev": r.rev, "world": lookup(r.params, "data.name"), "loss": _describe_loss(r.params),
             "seed": r.params.get("seed"), "epochs": r.metrics.get("epochs"), "steps": r.metrics.get("steps"),
             "train_seconds": _last(r.curves.get("train_seconds")),
             "knn_top1": r.metrics.get("knn_top1"), "linear_top1": r.metrics.get("linear_top1")}
            for r in data.values()]
    return Study(worlds, runs)


def summarise_world(world: str, points: list[Point], data: dict[str, RunData]) -> Summary:
    losses: dict[str, dict] = {}
    for p in (p for p in points if p.kind == "loss"):
        entry = losses.setdefault(p.label, {"runs": [], "seeds": []})
        entry["runs"].append(data[p.run])
        entry["seeds"].append(p.seed)
    timed = all(r.curves.get("train_seconds") for e in losses.values() for r in e["runs"])
    # The common budget in seconds: the shortest run's training time, which every run of the world reached.
    seconds = min((r.curves["train_seconds"][-1] for e in losses.values() for r in e["runs"]),
                  default=None) if timed else None
    for label, entry in losses.items():
        rs = entry["runs"]
        entry["final"] = {key: Stats([r.metrics[key] for r in rs]) for key, _ in TOP1}
        # Area under the learning curve: mean top-1 over epochs 1..N (the "learns faster" measure).
        entry["auc"] = {key: Stats([sum(r.curves[key]) / len(r.curves[key]) for r in rs]) for key, _ in TOP1}
        entry["gain"] = {key: Stats([r.metrics[key] - r.metrics[f"random_init_{key}"] for r in rs])
                         for key, _ in TOP1}
        entry["curves"] = {key: [_curve_with_init(r, key) for r in rs] for key, _ in TOP1}
        entry["seconds"] = [_seconds_with_init(r) for r in rs] if timed else None
        entry["at_seconds"] = ({key: Stats([value_at(_seconds_with_init(r), _curve_with_init(r, key), seconds)
                                            for r in rs]) for key, _ in TOP1} if timed else None)
        entry["train_seconds"] = Stats([r.curves["train_seconds"][-1] for r in rs]) if timed else None
        for fn in ("fn_selected", "fn_hardest"):
            got = [r.curves.get(fn) for r in rs]
            entry[fn] = got if all(got) else None
            entry[f"{fn}_final"] = Stats([c[-1] for c in got]) if all(got) else None
    ks: dict[int, dict] = {}
    for p in (p for p in points if p.kind == "k"):
        r = data[p.run]
        ks[int(p.label)] = {"run": r.name, "seed": p.seed, "final": {key: r.metrics[key] for key, _ in TOP1},
                            "gain": {key: r.metrics[key] - r.metrics[f"random_init_{key}"] for key, _ in TOP1},
                            "fn_selected": _last(r.curves.get("fn_selected")),
                            "fn_hardest": _last(r.curves.get("fn_hardest"))}
    baselines = {k: v for k, v in losses.items() if k not in VARIANTS_OF_REFERENCE}
    comparisons = _compare(baselines, seconds)
    # _compare gives the reference minus the other; the variant table reads the other way (k: auto minus k = 2)
    variants = [Comparison(c.other, c.measure, -c.diff, c.se) for c in _compare(
        {k: v for k, v in losses.items() if k == REFERENCE or k in VARIANTS_OF_REFERENCE}, seconds)]
    shared = [label for label in VARIANTS_OF_REFERENCE if label in losses and REFERENCE in losses
              and [r.name for r in losses[label]["runs"]] == [r.name for r in losses[REFERENCE]["runs"]]]
    setup = _setup(next(iter(data.values())))
    setup["seconds"] = seconds
    verdict, statement = _statement(baselines, comparisons, setup)
    seconds_verdict = ("is not tested" if verdict == "is not tested" else
                       _verdict([c for c in comparisons if c.measure.endswith(" s")]) if timed else "not measured")
    if timed and REFERENCE in baselines and len(baselines) > 1:
        statement.append(f"At equal training seconds ({seconds:.0f} s, the shortest run's training time; the "
                         f"monitor's passes excluded) the claim {seconds_verdict}"
                         + _beyond([c for c in comparisons if c.measure.endswith(" s")]) + ".")
        # A method whose first epoch ends after the common time has no measured point before it: its value
        # there is read on the straight line from its random init to epoch 1, an estimate.
        firsts = {label: Stats([run[1] for run in e["seconds"]]).mean
                  for label, e in losses.items() if label not in VARIANTS_OF_REFERENCE}
        late = {label: first for label, first in firsts.items() if first > seconds}
        if late:
            statement.append(
                f"No measured point before {seconds:.0f} s for "
                + ", ".join(f"{LOSSES[label][0]} (its first epoch ends at {first:.0f} s)"
                            for label, first in late.items())
                + (": its top-1 there is interpolated between its random init and epoch 1, an estimate that"
                   " assumes it learns at an even pace through that epoch." if len(late) == 1 else
                   ": their top-1 there is interpolated between their random init and epoch 1, an estimate that"
                   " assumes they learn at an even pace through that epoch."))
    return Summary(world, losses, dict(sorted(ks.items())), comparisons, verdict, seconds_verdict, statement, setup,
                   [c for c in variants if c.other != REFERENCE], shared, seconds)


def _describe_loss(params: dict) -> str:
    loss = params.get("loss", {})
    if loss.get("name") != "truncated_triplet":
        return str(loss.get("name"))
    variant = loss.get("variant")
    if variant == "smoothed":
        return f"truncated_triplet smoothed k={loss.get('k')}..{loss.get('k_end')}"
    return f"truncated_triplet {variant}" + (f" k={loss.get('k')}" if variant == "rank" else "")


def _setup(r: RunData) -> dict:
    p = r.params
    t = p.get("train", {})
    classes = lookup(p, "data.num_classes")
    if not isinstance(classes, int):  # runs recorded before data.num_classes existed
        classes = lookup(p, "generate.classification.classes") if lookup(p, "data.name") == "embedded" else None
    batch = t.get("batch_size")
    return {"data": lookup(p, "data.name"), "classes": classes, "arch": lookup(p, "model.arch"),
            "epochs": r.metrics.get("epochs"), "steps": r.metrics.get("steps"), "batch_size": batch,
            "image_size": t.get("image_size"), "optimizer": t.get("optimizer"), "lr": t.get("lr"),
            "warmup_epochs": t.get("warmup_epochs"), "knn_k": r.metrics.get("knn_k") or lookup(p, "eval.knn.k"),
            "knn_t": lookup(p, "eval.knn.temperature"),
            # The paper's Bernoulli model (docs/methods.md): same-class images among a query's B - 1 negatives.
            "expected_false_negatives": (batch - 1) / classes if classes and batch else None}


def _compare(losses: dict[str, dict], seconds: float | None) -> list[Comparison]:
    """Reference minus every other loss: final, mean over epochs, and at the common training time."""
    if REFERENCE not in losses:
        return []
    ref = losses[REFERENCE]
    out = []
    for label, entry in losses.items():
        if label == REFERENCE:
            continue
        for what in ("final", "auc", "at_seconds"):
            if entry.get(what) is None:
                continue
            for key, name in TOP1:
                a, b = ref[what][key], entry[what][key]
                se = math.sqrt(a.sd ** 2 / a.n + b.sd ** 2 / b.n) if a.n > 1 and b.n > 1 else float("nan")
                measure = {"final": f"final {name} top-1", "auc": f"mean-over-epochs {name} top-1",
                           "at_seconds": f"{name} top-1 at {seconds:.0f} s"}[what]
                out.append(Comparison(label, measure, a.mean - b.mean, se))
    return out


def _pp(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}"


def _verdict(primary: list[Comparison]) -> str:
    """holds (ahead of every baseline on every measure), does not hold (one is ahead of it), else not established."""
    if not primary or any(c.verdict.startswith("no spread") for c in primary):
        return "is not established"
    if any(c.verdict == "behind" for c in primary):
        return "does not hold"
    return "holds" if all(c.verdict == "ahead" for c in primary) else "is not established"


def _beyond(comparisons: list[Comparison]) -> str:
    behind = [c for c in comparisons if c.verdict == "behind"]
    ahead = [c for c in comparisons if c.verdict == "ahead"]
    parts = []
    if behind:
        parts.append("behind " + ", ".join(f"{LOSSES[c.other][0]} on {c.measure.split()[0]} ({_pp(c.diff)})"
                                           for c in behind))
    if ahead:
        parts.append("ahead of " + ", ".join(f"{LOSSES[c.other][0]} on {c.measure.split()[0]} ({_pp(c.diff)})"
                                             for c in ahead))
    return (": " + "; ".join(parts)) if parts else ": every difference lies within the spread over seeds"


def _statement(losses: dict, comparisons: list[Comparison], setup: dict) -> tuple[str, list[str]]:
    """The verdict on the paper's claim at equal epochs and the sentences that support it."""
    if REFERENCE not in losses or len(losses) < 2:
        return "is not tested", ["The study has no reference loss (smoothed truncated triplet) and another loss to "
                              "compare it with, so the claim is not tested."]
    primary = [c for c in comparisons if c.measure.startswith("final")]
    behind = [c for c in primary if c.verdict == "behind"]
    ahead = [c for c in primary if c.verdict == "ahead"]
    others = sorted({c.other for c in primary}, key=list(LOSSES).index)
    n = losses[REFERENCE]["final"]["knn_top1"].n
    verdict = _verdict(primary)
    lines = [f"Claim tested: at equal budget ({setup['epochs']} epochs, {setup['steps']} steps of batch "
             f"{setup['batch_size']}), the smoothed truncated triplet loss (k = 2) reaches a higher kNN and linear "
             f"top-1 than {', '.join(LOSSES[o][0] for o in others)}. A difference counts when it exceeds two "
             f"standard errors of the difference of the means over seeds ({n} seed{'s' if n != 1 else ''} each)."]
    if verdict == "is not established" and any(c.verdict.startswith("no spread") for c in primary):
        lines.append("With a single seed there is no spread to judge the differences against: the claim is "
                     "neither supported nor contradicted here.")
    elif verdict == "does not hold":
        lines.append("It does not hold here: " + "; ".join(
            f"{LOSSES[c.other][0]} is ahead on {c.measure} by {_pp(-c.diff)} points (2 SE = "
            f"{100 * 2 * c.se:.1f})" for c in behind) + ".")
    elif verdict == "holds":
        lines.append("It holds here: the triplet loss is ahead of every other loss on both final kNN "
                     "and final linear top-1 by more than two standard errors.")
    else:
        within = [c for c in primary if c.verdict == "within spread"]
        lines.append("It is not established here: the differences " + "; ".join(
            f"{c.measure} vs {LOSSES[c.other][0]} {_pp(c.diff)} points (2 SE = {100 * 2 * c.se:.1f})"
            for c in within) + " lie within the spread over seeds" + (
            "; it is ahead beyond the spread on " + ", ".join(f"{c.measure} vs {LOSSES[c.other][0]}" for c in ahead)
            if ahead else "") + ".")
    auc = [c for c in comparisons if c.measure.startswith("mean") and c.verdict in ("ahead", "behind")]
    if auc:
        lines.append("On the mean top-1 over the epochs (how fast it learns), beyond the spread: " + "; ".join(
            f"{'ahead of' if c.verdict == 'ahead' else 'behind'} {LOSSES[c.other][0]} on {c.measure.split()[1]}"
            f" by {100 * abs(c.diff):.1f} points"
            for c in auc) + ".")
    def unclear(g: Stats) -> bool:  # not beyond two standard errors above zero
        return g.mean <= 0 or (g.n > 1 and g.mean <= 2 * g.sd / math.sqrt(g.n))

    knn_gain, lin_gain = (losses[REFERENCE]["gain"].get(k) for k in ("knn_top1", "linear_top1"))
    if unclear(knn_gain) and (lin_gain is None or unclear(lin_gain)):
        lines.append(f"Caveat: the triplet runs end {_pp(knn_gain.mean)} kNN points from their random-init "
                     "weights (mean over seeds), i.e. no clear learning within this budget, so the comparison "
                     "says little about the paper's mechanism; a longer budget (--epochs) is needed.")
    elif unclear(knn_gain):
        lines.append(f"Caveat: the triplet runs' kNN top-1 ends {_pp(knn_gain.mean)} points from their "
                     f"random-init weights while their linear top-1 gains {_pp(lin_gain.mean)} (means over seeds): "
                     "the features have started to separate the classes linearly, but their nearest neighbours "
                     "are not yet better than the random network's; the kNN comparison is early in learning "
                     "(a longer budget, --epochs, would show more).")
    efn = setup.get("expected_false_negatives")
    if efn is not None:
        lines.append(f"With {setup['classes']} classes and {setup['batch_size'] - 1} negatives per query, about "
                     f"{efn:.1f} of a query's negatives share its class (ImageNet in the paper: 195 negatives, "
                     "1000 classes, 0.2)" + (", so truncating only the hardest rank cannot remove most of them"
                                             if efn >= 1 else ": the paper's regime") + ".")
    return verdict, lines


# --- the report ---------------------------------------------------------------------------------------------
def _fmt(s: Stats | None, scale: float = 100.0, digits: int = 1) -> str:
    if s is None:
        return "n/a"
    text = f"{scale * s.mean:.{digits}f}"
    if s.n > 1:
        text += f" ± {scale * s.sd:.{digits}f} [{scale * s.lo:.{digits}f}, {scale * s.hi:.{digits}f}]"
    return text


def _num(x, scale: float = 100.0, digits: int = 1) -> str:
    return "n/a" if x is None else f"{scale * x:.{digits}f}"


def _world_title(s: Summary) -> str:
    st = s.setup
    return f"`{s.world}`" + (f" ({st['classes']} classes)" if st["classes"] else "")


def render_markdown(study: Study, command: str, baseline: str | None) -> str:
    md = ["# Learning efficiency: does the truncated triplet loss learn faster?", "",
          f"Generated by `{command}` from the DVC experiments listed at the end"
          + (f" (baseline commit `{baseline[:10]}`)" if baseline else "") + "; do not edit by hand.", "",
          "The paper's claim, tested in each world: at equal budget the smoothed truncated triplet loss (k = 2) "
          "reaches a higher kNN and linear top-1 than every other method. 'holds' needs it ahead of each by more "
          "than two standard errors over seeds; 'does not hold' means a method is ahead of it by as much; "
          "anything else is 'not established'.", "",
          "| world | classes | false negatives expected per query | at equal epochs | at equal training seconds |",
          "|---|---|---|---|---|"]
    for s in study.worlds.values():
        efn = s.setup.get("expected_false_negatives")
        md.append(f"| `{s.world}` | {s.setup['classes'] or 'n/a'} | {'n/a' if efn is None else f'{efn:.1f}'} "
                  f"| **{s.verdict.removeprefix('is ')}** | **{s.seconds_verdict.removeprefix('is ')}** |")
    for s in study.worlds.values():
        md += ["", f"## World {_world_title(s)}", ""] + _render_world(s)
    md += ["", "## The runs (DVC experiments)", "",
           "`dvc exp show` lists them; each experiment commit holds its params.yaml, "
           f"`{METRICS_FILE}` and the per-epoch curves under `{CURVES_DIR}/`.", "",
           "| experiment | commit | world | loss | seed | epochs | steps | training s | kNN top-1 | linear top-1 |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in study.runs:
        secs = "n/a" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"
        md.append(f"| {r['name']} | `{r['rev'][:7]}` | {r['world']} | {r['loss']} | {r['seed']} | {r['epochs']} "
                  f"| {r['steps']} | {secs} | {_num(r['knn_top1'])} | {_num(r['linear_top1'])} |")
    return "\n".join(md) + "\n"


def _render_world(s: Summary) -> list[str]:
    st, w = s.setup, s.world
    md = [f"**Verdict: the paper's claim {s.verdict} here at equal epochs"
          + (f"; at equal training seconds it {s.seconds_verdict}" if s.seconds is not None else "") + ".**", ""]
    md += [f"- {line}" for line in s.statement]
    md += ["", "### Setup", "",
           f"Dataset `{st['data']}`" + (f" ({st['classes']} classes)" if st["classes"] else "")
           + f", {st['arch']}, {st['image_size']} px views, batch {st['batch_size']}, {st['epochs']} epochs = "
           f"{st['steps']} steps, {st['optimizer']} lr {st['lr']} (warm-up {st['warmup_epochs']} epochs), the "
           "same for every run; only `seed` and the method differ. Top-1 is measured on the validation split "
           f"after every epoch by the pretrain stage's monitor: kNN (k {st['knn_k']}, T {st['knn_t']}) and a "
           "linear probe on fixed features; epoch 0 is the random-init backbone each run starts from. "
           "Training seconds count the optimisation only (not the monitor), on the machine named in the README's "
           "study section. Values in % as mean ± sample standard deviation over seeds [min, max]."]
    if s.losses:
        secs = s.seconds
        md += ["", "### Learning curves", "", f"![top-1 against epochs and training seconds]({picture(w, 'curves')})",
               "", "Mean over seeds (line) and min-max over seeds (band); left against epochs, right against "
               "training seconds (the dotted line: the common budget).", "",
               "### Final table", "",
               "| method | seeds | final kNN top-1 | final linear top-1 | kNN gain over random init (points) "
               "| mean kNN top-1 over epochs | training s"
               + (f" | kNN top-1 at {secs:.0f} s | linear top-1 at {secs:.0f} s" if secs is not None else "") + " |",
               "|---|---|---|---|---|---|---" + ("|---|---" if secs is not None else "") + "|"]
        for label, e in s.losses.items():
            row = (f"| {LOSSES[label][0]} | {', '.join(map(str, e['seeds']))} | {_fmt(e['final']['knn_top1'])} "
                   f"| {_fmt(e['final']['linear_top1'])} | {_fmt(e['gain']['knn_top1'])} "
                   f"| {_fmt(e['auc']['knn_top1'])} | {_fmt(e['train_seconds'], scale=1.0, digits=0)}")
            if secs is not None:
                row += f" | {_fmt(e['at_seconds']['knn_top1'])} | {_fmt(e['at_seconds']['linear_top1'])}"
            md.append(row + " |")
        if s.comparisons:
            md += ["", "### Triplet (k = 2) minus each other method", "",
                   "Difference of the means in points, with two standard errors of that difference over seeds;"
                   " 'ahead' / 'behind' when it exceeds them.", ""] + _comparison_table(s.comparisons)
        if "auto" in s.losses:
            md += ["", "### `k: auto` (false-negative-aware ranks) against k = 2", ""]
            if s.shared:
                md.append("Here `k: auto` resolves to the paper's ranks 2..10: its points are the reference's own runs.")
            else:
                md += [f"`k: auto` resolves to ranks {_auto_ranks(s)} here.", ""]
                md += _comparison_table(s.variants, sign="k: auto minus k = 2")
        md += ["", "### False negatives", "", f"![false-negative rates per epoch]({picture(w, 'fn')})", "",
               "Share of same-class images among the negatives each method acts on, per training batch "
               "(view 1 -> view 2, local batch): `fn_selected` for the deputy ranks the triplet variants "
               "pick, `fn_hardest` for the most similar negative (computed the same way for every method, "
               "including those that select no negative)"
               + (f"; chance is about 1/{st['classes']} = {100 / st['classes']:.1f}%" if st["classes"] else "")
               + ". A rate above chance means classes are clustering; a selected rate below the hardest "
               "rate means the truncation skips false negatives.", "",
               "| method | fn_selected, last epoch | fn_hardest, last epoch |", "|---|---|---|"]
        for label, e in s.losses.items():
            md.append(f"| {LOSSES[label][0]} | {_fmt(e['fn_selected_final'])} | {_fmt(e['fn_hardest_final'])} |")
    if s.ks:
        md += ["", "### Sweep of the truncation rank k (smoothed ranks k..10)", "",
               f"![top-1 and false-negative rates against k]({picture(w, 'k')})", "",
               f"One run per k (seed {next(iter(s.ks.values()))['seed']}); the seed spread of the table "
               "above is the yardstick for these differences.", "",
               "| k | experiment | final kNN top-1 | final linear top-1 | kNN gain (points) | fn_selected | "
               "fn_hardest |", "|---|---|---|---|---|---|---|"]
        for k, e in s.ks.items():
            md.append(f"| {k} | {e['run']} | {_num(e['final']['knn_top1'])} | {_num(e['final']['linear_top1'])} "
                      f"| {_pp(e['gain']['knn_top1'])} | {_num(e['fn_selected'])} | {_num(e['fn_hardest'])} |")
    return md


def _auto_ranks(s: Summary) -> str:
    from ..losses.truncated_triplet import auto_ranks

    st = s.setup
    if not (st["classes"] and st["batch_size"]):
        return "(unknown: no class count recorded)"
    k, k_end = auto_ranks(st["batch_size"], st["classes"])
    return f"{k}..{k_end}"


def _comparison_table(comparisons: list[Comparison], sign: str = "difference") -> list[str]:
    md = [f"| other method | measure | {sign} | 2 SE | verdict |", "|---|---|---|---|---|"]
    for c in comparisons:
        md.append(f"| {LOSSES[c.other][0]} | {c.measure} | {_pp(c.diff)} | "
                  f"{'n/a' if math.isnan(c.se) else f'{200 * c.se:.1f}'} | {c.verdict} |")
    return md


# Beyond this ratio of the slowest method's training time to the fastest one's (EMP-SSL's 20 patches against two
# views: about 10x), a linear seconds axis squeezes every other method into its first tenth: log it instead.
LOG_SECONDS_SPAN = 5.0


def seconds_span(s: Summary) -> float:
    """How many times longer the slowest method's mean run trains than the fastest's (1.0 without timings)."""
    totals = [e["train_seconds"].mean for e in s.losses.values() if e.get("train_seconds")]
    totals = [t for t in totals if t > 0]
    return max(totals) / min(totals) if totals else 1.0


def _plots(s: Summary, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    written = []
    colours = {label: f"C{i}" for i, label in enumerate(LOSSES)}
    w = s.world
    if s.losses:
        timed = s.seconds is not None
        log_seconds = timed and seconds_span(s) > LOG_SECONDS_SPAN
        fig, axes = plt.subplots(2, 2 if timed else 1, figsize=(12 if timed else 6.5, 8), squeeze=False)
        for row, (key, name) in enumerate(TOP1):
            for label, e in s.losses.items():
                curves = e["curves"][key]
                cols = list(zip(*curves))
                mean = [sum(c) / len(c) for c in cols]
                style = dict(color=colours[label], marker="o", ms=3, label=LOSSES[label][0],
                             lw=2.2 if label == REFERENCE else 1.4, ls="--" if label in s.shared else "-")
                axes[row][0].plot(range(len(mean)), mean, **style)
                if len(curves) > 1:
                    axes[row][0].fill_between(range(len(mean)), [min(c) for c in cols], [max(c) for c in cols],
                                              color=colours[label], alpha=0.12, lw=0)
                if timed:
                    xs = [sum(c) / len(c) for c in zip(*e["seconds"])]
                    first = 1 if log_seconds else 0  # epoch 0 sits at 0 s, off a log axis
                    axes[row][1].plot(xs[first:], mean[first:], **style)
            axes[row][0].set_xlabel("epoch (0 = random init)")
            axes[row][0].xaxis.set_major_locator(MaxNLocator(integer=True))
            if timed:
                axes[row][1].axvline(s.seconds, color="grey", lw=1, ls=":")
                axes[row][1].set_xlabel("training seconds, log scale from epoch 1 (seed mean)" if log_seconds
                                        else "training seconds (mean over seeds; monitor excluded)")
                if log_seconds:
                    axes[row][1].set_xscale("log")
            for ax in axes[row]:
                ax.set_ylabel(f"{name} top-1 (val)")
                ax.set_title(f"{name} top-1, world {w}")
                ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / picture(w, "curves"), dpi=90)
        plt.close(fig)
        written.append(picture(w, "curves"))

        fig, ax = plt.subplots(figsize=(7.5, 4))
        for label, e in s.losses.items():
            if label in s.shared:
                continue
            for fn, style in (("fn_hardest", "-"), ("fn_selected", "--")):
                if e[fn]:
                    cols = list(zip(*e[fn]))
                    ax.plot(range(1, len(cols) + 1), [sum(c) / len(c) for c in cols], style, color=colours[label],
                            marker="o", ms=3, label=f"{LOSSES[label][0]}: {fn}")
        if s.setup["classes"]:
            ax.axhline(1 / s.setup["classes"], color="grey", lw=1, ls=":", label="chance (1 / classes)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("same-class share of the negatives")
        ax.set_title(f"false-negative rate (mean over seeds), world {w}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        fig.tight_layout()
        fig.savefig(out / picture(w, "fn"), dpi=90, bbox_inches="tight")
        plt.close(fig)
        written.append(picture(w, "fn"))
    if s.ks:
        ks = list(s.ks)
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for key, name in TOP1:
            axes[0].plot(ks, [s.ks[k]["final"][key] for k in ks], marker="o", label=f"final {name} top-1")
        _k_axis(axes[0], ks, "k (smoothed ranks k..10)", "top-1 (val)")
        for fn in ("fn_selected", "fn_hardest"):
            ys = [s.ks[k][fn] for k in ks]
            if all(y is not None for y in ys):
                axes[1].plot(ks, ys, marker="o", label=f"{fn}, last epoch")
        if s.setup["classes"]:
            axes[1].axhline(1 / s.setup["classes"], color="grey", lw=1, ls=":", label="chance")
        _k_axis(axes[1], ks, "k", "same-class share")
        fig.tight_layout()
        fig.savefig(out / picture(w, "k"), dpi=90)
        plt.close(fig)
        written.append(picture(w, "k"))
    return written


def _k_axis(ax, ks: list[int], xlabel: str, ylabel: str) -> None:
    """A log-scaled k axis labelled with the swept values, grid and legend."""
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def write_report(study: Study, out_dir: Path, command: str, baseline: str | None = None) -> Path:
    """Write efficiency.md and its pictures into `out_dir`, all at once (built in a temporary folder)."""
    out_dir = Path(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.efficiency.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        names = [name for s in study.worlds.values() for name in _plots(s, tmp)]
        (tmp / REPORT).write_text(render_markdown(study, command, baseline))
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob("efficiency_*.png"):  # a picture this study no longer draws must not linger
            if stale.name not in names:
                stale.unlink()
        for name in names:
            (tmp / name).replace(out_dir / name)
        (tmp / REPORT).replace(out_dir / REPORT)  # the markdown last: it is what says the report is whole
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / REPORT


def report(root: Path, spec: StudySpec, out_dir: Path, rev: str = "HEAD", command: str = "") -> Path:
    points, data, baseline = collect(root, spec, rev)
    return write_report(summarise(points, data), out_dir, command, baseline)
