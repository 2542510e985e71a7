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
CURVE_KEYS = ("knn_top1", "linear_top1", "loss", "fn_selected", "fn_hardest")
REPORT = "efficiency.md"
PICTURES = {"curves": "efficiency_curves.png", "fn": "efficiency_fn.png", "k": "efficiency_k.png"}
TOP1 = (("knn_top1", "kNN"), ("linear_top1", "linear"))
# The budget must be equal: every run must agree on these params groups (the study sets only seed, method, loss).
SAME_FOR_ALL = ("train", "model", "eval.knn", "eval.linear", "convert.loader", "data", "generate")


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
        for key, _ in TOP1:
            curve = r.curves.get(key)
            if not curve or len(curve) != epochs:
                problems.append(f"{r.name}: {key} curve has {len(curve or [])} epochs, metrics.json says {epochs}")
            elif r.metrics.get(key) is None or not math.isclose(curve[-1], r.metrics[key], abs_tol=1e-9):
                problems.append(f"{r.name}: {key} curve ends at {curve[-1]}, metrics.json has {r.metrics.get(key)}")
    first = next(iter(data.values()), None)
    for r in data.values():
        for group in SAME_FOR_ALL:
            if lookup(r.params, group) != lookup(first.params, group):
                problems.append(f"{r.name}: params '{group}' differ from {first.name}'s (the runs must share "
                                "everything but seed and loss)")
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
    losses: dict[str, dict]  # label -> {"runs", "final": {key: Stats}, "auc": {key: Stats}, "curves", ...}
    ks: dict[int, dict]  # k -> {"run", "final": {key: value}, "fn_selected", "fn_hardest"}
    comparisons: list[Comparison]
    verdict: str
    statement: list[str]
    setup: dict
    runs: list[dict] = field(default_factory=list)


def _curve_with_init(r: RunData, key: str) -> list[float]:
    """Top-1 per epoch with epoch 0 = the random-init monitor (the same weights the run started from)."""
    return [r.metrics[f"random_init_{key}"]] + list(r.curves[key])


def _last(curve: list[float] | None) -> float | None:
    return curve[-1] if curve else None


def summarise(points: list[Point], data: dict[str, RunData]) -> Summary:
    losses: dict[str, dict] = {}
    for p in (p for p in points if p.kind == "loss"):
        entry = losses.setdefault(p.label, {"runs": [], "seeds": []})
        entry["runs"].append(data[p.run])
        entry["seeds"].append(p.seed)
    for label, entry in losses.items():
        rs = entry["runs"]
        entry["final"] = {key: Stats([r.metrics[key] for r in rs]) for key, _ in TOP1}
        # Area under the learning curve: mean top-1 over epochs 1..N (the "learns faster" measure).
        entry["auc"] = {key: Stats([sum(r.curves[key]) / len(r.curves[key]) for r in rs]) for key, _ in TOP1}
        entry["gain"] = {key: Stats([r.metrics[key] - r.metrics[f"random_init_{key}"] for r in rs])
                         for key, _ in TOP1}
        entry["curves"] = {key: [_curve_with_init(r, key) for r in rs] for key, _ in TOP1}
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
    comparisons = _compare(losses)
    setup = _setup(next(iter(data.values())))
    verdict, statement = _statement(losses, comparisons, setup)
    runs = [{"name": r.name, "rev": r.rev, "loss": _describe_loss(r.params), "seed": r.params.get("seed"),
             "epochs": r.metrics.get("epochs"), "steps": r.metrics.get("steps"),
             "knn_top1": r.metrics.get("knn_top1"), "linear_top1": r.metrics.get("linear_top1")}
            for r in data.values()]
    return Summary(losses, dict(sorted(ks.items())), comparisons, verdict, statement, setup, runs)


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
    classes = lookup(p, "generate.classification.classes") if p.get("data", {}).get("name") == "embedded" else None
    batch = t.get("batch_size")
    return {"data": lookup(p, "data.name"), "classes": classes, "arch": lookup(p, "model.arch"),
            "epochs": r.metrics.get("epochs"), "steps": r.metrics.get("steps"), "batch_size": batch,
            "image_size": t.get("image_size"), "optimizer": t.get("optimizer"), "lr": t.get("lr"),
            "warmup_epochs": t.get("warmup_epochs"), "knn_k": lookup(p, "eval.knn.k"),
            "knn_t": lookup(p, "eval.knn.temperature"),
            # Bernoulli model of docs/method.md section 1: same-class images among a query's B - 1 negatives.
            "expected_false_negatives": (batch - 1) / classes if classes and batch else None}


def _compare(losses: dict[str, dict]) -> list[Comparison]:
    if REFERENCE not in losses:
        return []
    ref = losses[REFERENCE]
    out = []
    for label, entry in losses.items():
        if label == REFERENCE:
            continue
        for what in ("final", "auc"):
            for key, name in TOP1:
                a, b = ref[what][key], entry[what][key]
                se = math.sqrt(a.sd ** 2 / a.n + b.sd ** 2 / b.n) if a.n > 1 and b.n > 1 else float("nan")
                measure = f"final {name}" if what == "final" else f"mean-over-epochs {name}"
                out.append(Comparison(label, measure, a.mean - b.mean, se))
    return out


def _pp(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}"


def _statement(losses: dict, comparisons: list[Comparison], setup: dict) -> tuple[str, list[str]]:
    """The verdict on the paper's claim and the sentences that support it, from the final top-1 values."""
    if REFERENCE not in losses or len(losses) < 2:
        return "is not tested", ["The study has no reference loss (smoothed truncated triplet) and another loss to "
                              "compare it with, so the claim is not tested."]
    primary = [c for c in comparisons if c.measure.startswith("final")]
    behind = [c for c in primary if c.verdict == "behind"]
    ahead = [c for c in primary if c.verdict == "ahead"]
    unmeasured = [c for c in primary if c.verdict.startswith("no spread")]
    others = sorted({c.other for c in primary})
    ref = losses[REFERENCE]
    n = ref["final"]["knn_top1"].n
    lines = [f"Claim tested: at equal budget ({setup['epochs']} epochs, {setup['steps']} steps of batch "
             f"{setup['batch_size']}), the smoothed truncated triplet loss (k = 2) reaches a higher kNN and linear "
             f"top-1 than {', '.join(LOSSES[o][0] for o in others)}. A difference counts when it exceeds two "
             f"standard errors of the difference of the means over seeds ({n} seed{'s' if n != 1 else ''} each)."]
    if unmeasured:
        verdict = "is not established"
        lines.append("With a single seed there is no spread to judge the differences against: the claim is "
                     "neither supported nor contradicted here.")
    elif behind:
        verdict = "does not hold"
        lines.append("It does not hold on this data: " + "; ".join(
            f"{LOSSES[c.other][0]} is ahead on {c.measure} top-1 by {_pp(-c.diff)} points (2 SE = "
            f"{100 * 2 * c.se:.1f})" for c in behind) + ".")
    elif len(ahead) == len(primary):
        verdict = "holds"
        lines.append("It holds on this data: the triplet loss is ahead of every other loss on both final kNN "
                     "and final linear top-1 by more than two standard errors.")
    else:
        verdict = "is not established"
        within = [c for c in primary if c.verdict == "within spread"]
        lines.append("It is not established on this data: the differences " + "; ".join(
            f"{c.measure} vs {LOSSES[c.other][0]} {_pp(c.diff)} points (2 SE = {100 * 2 * c.se:.1f})"
            for c in within) + " lie within the spread over seeds" + (
            "; it is ahead beyond the spread on " + ", ".join(f"{c.measure} vs {c.other}" for c in ahead)
            if ahead else "") + ".")
    auc = [c for c in comparisons if not c.measure.startswith("final") and c.verdict in ("ahead", "behind")]
    if auc:
        lines.append("On the mean top-1 over the epochs (how fast it learns), beyond the spread: " + "; ".join(
            f"{'ahead of' if c.verdict == 'ahead' else 'behind'} {LOSSES[c.other][0]} on {c.measure.split()[-1]}"
            f" by {100 * abs(c.diff):.1f} points"
            for c in auc) + ".")
    gain = ref["gain"]["knn_top1"]
    if gain.mean <= 0 or (gain.n > 1 and gain.mean <= 2 * gain.sd / math.sqrt(gain.n)):
        lines.append(f"Caveat: the triplet runs end {_pp(gain.mean)} kNN points from their random-init "
                     "weights (mean over seeds), i.e. no clear learning within this budget, so the comparison "
                     "says little about the paper's mechanism; a longer budget (--epochs) is needed.")
    efn = setup.get("expected_false_negatives")
    if efn is not None and efn >= 1:
        lines.append(f"With {setup['classes']} classes and {setup['batch_size'] - 1} negatives per query, about "
                     f"{efn:.1f} of a query's negatives share its class (ImageNet in the paper: 195 negatives, "
                     "1000 classes, 0.2), so truncating only the hardest rank cannot remove most false "
                     "negatives here; the k sweep and the false-negative rates below show what truncation does "
                     "on this data.")
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


def render_markdown(s: Summary, command: str, baseline: str | None) -> str:
    st = s.setup
    md = ["# Learning efficiency: does the truncated triplet loss learn faster?", "",
          f"Generated by `{command}` from the DVC experiments listed at the end"
          + (f" (baseline commit `{baseline[:10]}`)" if baseline else "") + "; do not edit by hand.", "",
          f"**Verdict: the paper's claim {s.verdict} on this data.**", ""]
    md += [f"- {line}" for line in s.statement]
    md += ["", "## Setup", "",
           f"Dataset `{st['data']}`" + (f" ({st['classes']} classes)" if st["classes"] else "")
           + f", {st['arch']}, {st['image_size']} px views, batch {st['batch_size']}, {st['epochs']} epochs = "
           f"{st['steps']} steps, {st['optimizer']} lr {st['lr']} (warm-up {st['warmup_epochs']} epochs), the "
           "same for every run; only `seed` and the loss differ. Top-1 is measured on the validation split "
           f"after every epoch by the pretrain stage's monitor: kNN (k {st['knn_k']}, T {st['knn_t']}) and a "
           "linear probe on fixed "
           "features; epoch 0 is the random-init backbone each run starts from. Values in % as mean ± sample "
           "standard deviation over seeds [min, max]."]
    if s.losses:
        md += ["", "## Learning curves", "", f"![kNN and linear top-1 per epoch]({PICTURES['curves']})", "",
               "Mean over seeds (line) and min-max over seeds (band).", "",
               "## Final table", "",
               "| loss | seeds | final kNN top-1 | final linear top-1 | kNN gain over random init (points) "
               "| mean kNN top-1 over epochs (AUC) | mean linear top-1 over epochs |",
               "|---|---|---|---|---|---|---|"]
        for label, e in s.losses.items():
            md.append(f"| {LOSSES[label][0]} | {', '.join(map(str, e['seeds']))} | {_fmt(e['final']['knn_top1'])} "
                      f"| {_fmt(e['final']['linear_top1'])} | {_fmt(e['gain']['knn_top1'])} "
                      f"| {_fmt(e['auc']['knn_top1'])} | {_fmt(e['auc']['linear_top1'])} |")
        if s.comparisons:
            md += ["", "### Triplet (k = 2) minus each other loss", "",
                   "Difference of the means in points, with two standard errors of that difference over seeds;"
                   " 'ahead' / 'behind' when it exceeds them.", "",
                   "| other loss | measure | difference | 2 SE | verdict |", "|---|---|---|---|---|"]
            for c in s.comparisons:
                md.append(f"| {LOSSES[c.other][0]} | {c.measure} top-1 | {_pp(c.diff)} | "
                          f"{'n/a' if math.isnan(c.se) else f'{200 * c.se:.1f}'} | {c.verdict} |")
        md += ["", "## False negatives per loss", "", f"![false-negative rates per epoch]({PICTURES['fn']})", "",
               "Share of same-class images among the negatives each loss acts on, per training batch "
               "(view 1 -> view 2, local batch): `fn_selected` for the deputy ranks the triplet variants "
               "pick, `fn_hardest` for the most similar negative (computed the same way for every loss, "
               "including BYOL and InfoNCE, which select no negative)"
               + (f"; chance is about 1/{st['classes']} = {100 / st['classes']:.0f}%" if st["classes"] else "")
               + ". A rate above chance means classes are clustering; a selected rate below the hardest "
               "rate means the truncation skips false negatives.", "",
               "| loss | fn_selected, last epoch | fn_hardest, last epoch |", "|---|---|---|"]
        for label, e in s.losses.items():
            md.append(f"| {LOSSES[label][0]} | {_fmt(e['fn_selected_final'])} | {_fmt(e['fn_hardest_final'])} |")
    if s.ks:
        md += ["", "## Sweep of the truncation rank k (smoothed ranks k..10)", "",
               f"![top-1 and false-negative rates against k]({PICTURES['k']})", "",
               f"One run per k (seed {next(iter(s.ks.values()))['seed']}); the seed spread of the loss table "
               "above is the yardstick for these differences.", "",
               "| k | experiment | final kNN top-1 | final linear top-1 | kNN gain (points) | fn_selected | "
               "fn_hardest |", "|---|---|---|---|---|---|---|"]
        for k, e in s.ks.items():
            md.append(f"| {k} | {e['run']} | {_num(e['final']['knn_top1'])} | {_num(e['final']['linear_top1'])} "
                      f"| {_pp(e['gain']['knn_top1'])} | {_num(e['fn_selected'])} | {_num(e['fn_hardest'])} |")
    md += ["", "## The runs (DVC experiments)", "",
           "`dvc exp show` lists them; each experiment commit holds its params.yaml, "
           f"`{METRICS_FILE}` and the per-epoch curves under `{CURVES_DIR}/`.", "",
           "| experiment | commit | loss | seed | epochs | steps | kNN top-1 | linear top-1 |",
           "|---|---|---|---|---|---|---|---|"]
    for r in s.runs:
        md.append(f"| {r['name']} | `{r['rev'][:7]}` | {r['loss']} | {r['seed']} | {r['epochs']} | {r['steps']} "
                  f"| {_num(r['knn_top1'])} | {_num(r['linear_top1'])} |")
    return "\n".join(md) + "\n"


def _plots(s: Summary, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    written = []
    colours = {label: f"C{i}" for i, label in enumerate(LOSSES)}
    if s.losses:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, (key, name) in zip(axes, TOP1):
            for label, e in s.losses.items():
                curves = e["curves"][key]
                epochs = list(range(len(curves[0])))
                cols = list(zip(*curves))
                ax.plot(epochs, [sum(c) / len(c) for c in cols], color=colours[label], marker="o", ms=3,
                        label=LOSSES[label][0], lw=2.2 if label == REFERENCE else 1.4)
                if len(curves) > 1:
                    ax.fill_between(epochs, [min(c) for c in cols], [max(c) for c in cols], color=colours[label],
                                    alpha=0.15, lw=0)
            ax.set_xlabel("epoch (0 = random init)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(f"{name} top-1 (val)")
            ax.set_title(f"{name} top-1 per epoch")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / PICTURES["curves"], dpi=100)
        plt.close(fig)
        written.append(PICTURES["curves"])

        fig, ax = plt.subplots(figsize=(7.5, 4))
        for label, e in s.losses.items():
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
        ax.set_title("false-negative rate (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        fig.tight_layout()
        fig.savefig(out / PICTURES["fn"], dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(PICTURES["fn"])
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
        fig.savefig(out / PICTURES["k"], dpi=100)
        plt.close(fig)
        written.append(PICTURES["k"])
    return written


def _k_axis(ax, ks: list[int], xlabel: str, ylabel: str) -> None:
    """A log-scaled k axis labelled with the swept values, grid and legend."""
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def write_report(s: Summary, out_dir: Path, command: str, baseline: str | None = None) -> Path:
    """Write efficiency.md and its pictures into `out_dir`, all at once (built in a temporary folder)."""
    out_dir = Path(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.efficiency.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        names = _plots(s, tmp)
        (tmp / REPORT).write_text(render_markdown(s, command, baseline))
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in PICTURES.values():  # a picture this study no longer draws must not linger
            if stale not in names:
                (out_dir / stale).unlink(missing_ok=True)
        for name in names:
            (tmp / name).replace(out_dir / name)
        (tmp / REPORT).replace(out_dir / REPORT)  # the markdown last: it is what says the report is whole
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / REPORT


def report(root: Path, spec: StudySpec, out_dir: Path, rev: str = "HEAD", command: str = "") -> Path:
    points, data, baseline = collect(root, spec, rev)
    return write_report(summarise(points, data), out_dir, command, baseline)
