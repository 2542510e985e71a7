"""The study's experiment set and how it is run: one DVC experiment per (world, loss, seed) and per rank k.

Every run is `dvc exp run --temp -n <name> -S <overrides> pretrain`: DVC reproduces the `pretrain` stage
and what it depends on (generate, validate, convert: unchanged, so skipped with their outputs taken from
the cache), never the evaluation stages downstream of it, whose cost would not change the comparison (the
pretrain stage already logs kNN and linear-probe top-1 every epoch, and the training seconds behind each).
`--temp` runs it in a temporary copy, so the workspace and its params.yaml are left as they were, and records
it as an experiment commit named `<prefix>-<world>-<loss>-s<seed>` / `<prefix>-<world>-k<k>-s<seed>` on the
current commit (`dvc exp show` lists them).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

# label -> (what it is, Hydra overrides, params the recorded run must have). The reference comes first. loss.name
# implies the method (the params schema pairs them).
LOSSES: dict[str, tuple[str, tuple[str, ...], dict]] = {
    "triplet": ("truncated triplet, smoothed k=2 (paper)",
                ("loss=truncated_triplet", "loss.k=2"),
                {"loss.name": "truncated_triplet", "loss.variant": "smoothed", "loss.k": 2}),
    "auto": ("truncated triplet, k: auto (false-negative-aware)",
             ("loss=truncated_triplet", "loss.k=auto", "loss.k_end=auto"),
             {"loss.name": "truncated_triplet", "loss.variant": "smoothed", "loss.k": "auto"}),
    "median": ("median triplet", ("loss=median",), {"loss.name": "truncated_triplet", "loss.variant": "median"}),
    "hardest": ("hardest-negative triplet", ("loss=hardest",),
                {"loss.name": "truncated_triplet", "loss.variant": "hardest"}),
    "byol": ("BYOL", ("method=byol",), {"loss.name": "byol"}),
    "simclr": ("SimCLR", ("method=simclr",), {"loss.name": "nt_xent"}),
    "simsiam": ("SimSiam", ("method=simsiam",), {"loss.name": "negative_cosine"}),
    "emp_ssl": ("EMP-SSL", ("method=emp_ssl",), {"loss.name": "coding_rate"}),
    "infonce": ("InfoNCE on BYOL's model", ("method=infonce",), {"loss.name": "infonce"}),
}
# The published methods (docs/methods.md); InfoNCE on BYOL's model stays available with --losses.
DEFAULT_LOSSES = ("triplet", "auto", "median", "hardest", "byol", "simclr", "simsiam", "emp_ssl")
# Run last: EMP-SSL's 20 patches per image cost several times a two-view step, so an interrupted study has
# covered every other method first.
SLOW_LOSSES = ("emp_ssl",)
# data group -> what it is (docs/worlds.md): the 10-class default and the many-class world of the paper's regime.
WORLDS: dict[str, str] = {"embedded": "10 classes, 5,000 training images",
                          "embedded_many": "144 classes, 5,760 training images"}
REFERENCE = "triplet"
KS: tuple[int, ...] = ()  # the rank sweep is optional (--ks 1,2,3,5,10): it costs a run per k and world
SEEDS = (0, 1, 2)
STAGE = "pretrain"
# `touch .dvc/tmp/study-stop`: the running study stops after its current run (and removes the file), so the
# machine can be freed without losing a run; `make study` later resumes where it stopped.
STOP_FILE = Path(".dvc/tmp/study-stop")


class StudyError(RuntimeError):
    """The study cannot run or be reported as asked; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Run:
    """One DVC experiment: its name, the -S overrides, and the params its recorded commit must have."""
    name: str
    overrides: tuple[str, ...]
    expect: dict = field(hash=False, compare=False)


@dataclass(frozen=True)
class Point:
    """One point of the study: a loss at a seed, or a rank k of the smoothed truncated triplet at a seed, in a world."""
    kind: str  # "loss" | "k"
    label: str  # loss label, or str(k)
    seed: int
    run: str  # the name of the experiment that measures it (shared when two points are the same run)
    world: str = "embedded"  # the data group


def _parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise StudyError(f"{what} = {text!r}: expected comma-separated integers") from None
    return values


@dataclass(frozen=True)
class StudySpec:
    """Which runs make up the study. The defaults: the published methods x 3 seeds x both worlds, no k sweep."""
    losses: tuple[str, ...] = DEFAULT_LOSSES
    seeds: tuple[int, ...] = SEEDS
    ks: tuple[int, ...] = KS
    epochs: int | None = None  # train.epochs for every run (None: what conf/ composes)
    extra: tuple[str, ...] = ()  # further key=value overrides applied to every run (same budget for all)
    prefix: str = "eff"
    worlds: tuple[str, ...] = tuple(WORLDS)

    def __post_init__(self):
        unknown = [x for x in self.losses if x not in LOSSES]
        if unknown:
            raise StudyError(f"losses {unknown}: unknown; expected some of {', '.join(LOSSES)}")
        worlds = [w for w in self.worlds if w not in WORLDS]
        if worlds or not self.worlds:
            raise StudyError(f"worlds {list(self.worlds)}: expected one or more of {', '.join(WORLDS)}")
        if not self.losses and not self.ks:
            raise StudyError("the study has no runs: give at least one loss or one k")
        if not self.seeds:
            raise StudyError("seeds: at least one seed is needed")
        if (len(set(self.seeds)) != len(self.seeds) or len(set(self.ks)) != len(self.ks)
                or len(set(self.worlds)) != len(self.worlds)):
            raise StudyError(f"seeds {list(self.seeds)} / ks {list(self.ks)} / worlds {list(self.worlds)}: "
                             "repeated values")
        if any(k < 1 for k in self.ks):
            raise StudyError(f"ks {list(self.ks)}: every k must be >= 1")
        if self.epochs is not None and self.epochs < 1:
            raise StudyError(f"epochs = {self.epochs}: expected >= 1")
        for kv in self.extra:
            key = kv.split("=", 1)[0]
            if "=" not in kv or key.split(".")[0] in {"seed", "loss", "data", "method"} or key in (
                    "train.epochs", "train.steps", "train.warmup_steps", "train.monitor_every"):
                raise StudyError(f"-S {kv}: expected key=value for a key the study does not set itself "
                                 "(seed, data, method, loss.*, the budget keys train.epochs, train.steps and "
                                 "train.warmup_steps, and train.monitor_every are the study's)")
        if not self.prefix.replace("-", "").replace("_", "").isalnum():
            raise StudyError(f"prefix = {self.prefix!r}: letters, digits, '-' and '_' only")

    @classmethod
    def from_args(cls, losses: str | None, seeds: int | None, ks: str | None, epochs: int | None,
                  extra: list[str] | None, prefix: str, worlds: str | None = None) -> "StudySpec":
        return cls(losses=tuple(v.strip() for v in losses.split(",") if v.strip()) if losses is not None
                   else DEFAULT_LOSSES,
                   seeds=tuple(range(seeds)) if seeds is not None else SEEDS,
                   ks=_parse_ints(ks, "ks") if ks is not None else KS,
                   epochs=epochs, extra=tuple(extra or ()), prefix=prefix,
                   worlds=tuple(v.strip() for v in worlds.split(",") if v.strip()) if worlds is not None
                   else tuple(WORLDS))

    @property
    def k_seed(self) -> int:
        """The k sweep runs at the first seed (one run per k; the seed spread comes from the loss runs)."""
        return self.seeds[0]

    def _common(self, seed: int, world: str) -> tuple[tuple[str, ...], dict]:
        # Learning curves need every epoch's kNN and probe, whatever the pipeline default's monitor_every. Not
        # in `expect`: runs recorded before the key existed monitored every epoch, and the report refuses any
        # run whose curve misses an epoch.
        overrides = ((f"data={world}", f"seed={seed}") + ((f"train.epochs={self.epochs}",) if self.epochs else ())
                     + ("train.monitor_every=1",) + self.extra)
        expect = {"data.name": world, "seed": seed} | ({"train.epochs": self.epochs} if self.epochs else {})
        for kv in self.extra:
            key, value = kv.split("=", 1)
            expect[key] = _yaml_value(value)
        return overrides, expect

    def plan(self) -> tuple[list[Point], list[Run]]:
        """(every point of the study, the distinct runs that measure them) in run order.

        Points that are the same run share it: the k = 2 point of a k sweep is the reference loss at the first
        seed, and `k: auto` is the reference wherever it resolves to the paper's ranks (the many-class world).
        Runs go seed by seed (every method of a seed before the next seed), the slow methods last.
        """
        points: list[Point] = []
        runs: dict[tuple[str, ...], Run] = {}

        def add(kind: str, label: str, seed: int, world: str, name: str, loss_overrides: tuple[str, ...],
                expect: dict):
            common, common_expect = self._common(seed, world)
            key = tuple(sorted(loss_overrides + common))
            if key not in runs:
                runs[key] = Run(name, loss_overrides + common, expect | common_expect)
            points.append(Point(kind, label, seed, runs[key].name, world))

        for world in self.worlds:
            same_as_reference = (REFERENCE in self.losses and "auto" in self.losses
                                 and resolved_ranks(world, LOSSES["auto"][1], self.extra)
                                 == resolved_ranks(world, LOSSES[REFERENCE][1], self.extra))
            for loss in self.losses:
                shared = REFERENCE if loss == "auto" and same_as_reference else loss
                _, overrides, expect = LOSSES[shared]
                for seed in self.seeds:
                    add("loss", loss, seed, world, f"{self.prefix}-{world}-{shared}-s{seed}", overrides, expect)
            for k in self.ks:
                add("k", str(k), self.k_seed, world, f"{self.prefix}-{world}-k{k}-s{self.k_seed}",
                    ("loss=truncated_triplet", f"loss.k={k}"),
                    {"loss.name": "truncated_triplet", "loss.variant": "smoothed", "loss.k": k})
        order = {run.name: i for i, run in enumerate(runs.values())}
        by_name = {p.run: p for p in reversed(points)}  # the first point of each run

        def rank(run: Run):
            point = by_name[run.name]
            return (point.label in SLOW_LOSSES, point.seed, order[run.name])
        return points, sorted(runs.values(), key=rank)


@lru_cache(maxsize=None)
def resolved_ranks(world: str, loss_overrides: tuple[str, ...], extra: tuple[str, ...]) -> tuple[int, int]:
    """The deputy ranks (k, k_end) a triplet run of `world` uses, `auto` resolved for one process's batch."""
    from ..config import ParamsError, compose, validate_params

    overrides = [f"data={world}", *loss_overrides, *extra]
    try:
        params = validate_params(compose(overrides), source=" ".join(overrides))
    except ParamsError as e:
        raise StudyError(str(e)) from None
    return params.loss.ranks(params.train.batch_size, params.data.num_classes)


def _yaml_value(text: str):
    from ruamel.yaml import YAML

    try:
        return YAML(typ="safe", pure=True).load(text)
    except Exception:  # noqa: BLE001 (a value YAML cannot parse is compared as the string given)
        return text


def lookup(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def mismatches(params: dict, expect: dict) -> list[str]:
    """The expected params a recorded run does not have, as 'key = recorded (expected value)' lines."""
    out = []
    for key, want in expect.items():
        got = lookup(params, key)
        if got is _MISSING:
            out.append(f"{key} missing (expected {want!r})")
        elif got != want and not (isinstance(got, (int, float)) and isinstance(want, (int, float)) and got == want):
            out.append(f"{key} = {got!r} (expected {want!r})")
    return out


# --- what DVC has recorded ----------------------------------------------------------------------------
def recorded_by_baseline(root: Path, rev: str = "HEAD", num: int = 1) -> list[tuple[str, dict[str, dict]]]:
    """[(baseline commit, {name: {"rev", "params", "metrics"}})] for `rev` and the `num` - 1 first-parent
    commits before it, newest first, from `dvc exp show --json` (failed and queued experiments left out)."""
    from .. import dvc_cli

    shown = dvc_cli.dvc_json(root, "exp", "show", "--json", "--rev", rev, "-n", str(num), "--hide-queued",
                             "--hide-failed")
    finished = finished_experiments(root)
    out = []
    for base in shown:
        if base.get("rev") == "workspace":
            continue
        runs: dict[str, dict] = {}
        for exp in base.get("experiments") or []:
            for run in exp.get("revs") or []:
                data = run.get("data") or {}
                if not run.get("name") or run.get("error") or not data:
                    continue
                if finished.get(run["name"]) != run.get("rev"):
                    continue  # still running, or killed mid-run: its commit holds the baseline's metrics
                runs[run["name"]] = {
                    "rev": run["rev"],
                    "params": (data.get("params") or {}).get("params.yaml", {}).get("data", {}),
                    "metrics": {f: v.get("data", {}) for f, v in (data.get("metrics") or {}).items()},
                }
        out.append((base["rev"], runs))
    return out


def finished_experiments(root: Path) -> dict[str, str]:
    """name -> commit of every experiment DVC has finished (a ref under refs/exps). `dvc exp show` also lists a
    run in progress, or one whose process was killed, under the commit it started from, with no way to tell
    them apart in its JSON; only a finished run has its ref."""
    out: dict[str, str] = {}
    for ref, sha in _exp_refs(root).items():
        parts = ref.split("/")
        # refs/exps/<2 hex>/<38 hex>/<name>: one per recorded experiment (temp and celery refs have other shapes)
        if len(parts) == 5 and len(parts[2]) == 2 and len(parts[3]) == 38:
            out[parts[4]] = sha
    return out


def recorded(root: Path, rev: str = "HEAD") -> dict[str, dict]:
    """name -> {"rev", "params", "metrics"} of the experiments recorded on baseline `rev`."""
    found = recorded_by_baseline(root, rev, 1)
    return found[0][1] if found else {}


# --- keeping the runs: DVC records experiments as git refs (refs/exps/...) of this clone only -----------
BUNDLE = Path("reports/efficiency-runs.bundle")


def _git(root: Path, *args: str) -> str:
    import subprocess

    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StudyError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _exp_refs(root: Path) -> dict[str, str]:
    """refname -> commit of every ref under refs/exps in this clone (DVC's experiments)."""
    lines = _git(root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").splitlines()
    return dict(line.split(" ", 1) for line in lines if line.strip())


def save_runs(root: Path, spec: StudySpec, bundle: Path = BUNDLE) -> tuple[Path, int]:
    """Write the study's recorded experiments (their refs and commits, not the history they start from) to a git
    bundle that can be committed: another clone or machine reads them back with `load_runs`, so the report can
    be regenerated from the recorded runs anywhere. Returns (bundle, refs saved)."""
    names = {r.name for r in spec.plan()[1]}
    refs = [ref for ref in _exp_refs(root) if ref.rsplit("/", 1)[-1] in names]
    if not refs:
        raise StudyError(f"no experiment of the study ({next(iter(sorted(names)))}, ...) is recorded in this clone")
    target = Path(root) / bundle
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    _git(root, "bundle", "create", str(tmp), *refs, "--not", "--branches", "--tags")
    tmp.replace(target)
    return target, len(refs)


def load_runs(root: Path, bundle: Path = BUNDLE, echo=print) -> int:
    """Fetch the experiments of a saved bundle that this clone does not have yet (a run recorded here, e.g.
    re-run with --force, is kept); returns how many it fetched. A bundle that cannot be read (a clone without
    the commits the runs start from) is a warning: the runs recorded here still make the report."""
    source = Path(root) / bundle
    if not source.is_file():
        return 0
    try:
        heads = [line.split()[1] for line in _git(root, "bundle", "list-heads", str(source)).splitlines()
                 if line.strip()]
        have = _exp_refs(root)
        missing = [ref for ref in heads if ref.startswith("refs/exps/") and ref not in have]
        if missing:
            _git(root, "fetch", "--quiet", str(source), *(f"{ref}:{ref}" for ref in missing))
        return len(missing)
    except StudyError as e:
        echo(f"warning: {bundle}: not read ({e}); reporting from the runs recorded in this clone")
        return 0


# --- running ------------------------------------------------------------------------------------------
def dvc_args(run: Run) -> list[str]:
    """`dvc exp run` arguments for one run: a temporary copy, the name, the overrides, target `pretrain`.

    (Never `--force`: it would re-run generate, validate and convert too; a run is replaced by removing
    the recorded experiment first.)
    """
    sets = [a for o in run.overrides for a in ("-S", o)]
    return ["exp", "run", "--temp", "-n", run.name, *sets, STAGE]


def run_study(root: Path, spec: StudySpec, force: bool = False, dry_run: bool = False,
              echo: Callable[[str], None] = print) -> list[str]:
    """Run every run of `spec` not yet recorded on HEAD, one at a time; returns the names that failed.

    A run already recorded under its name with the expected params is skipped (so an interrupted study
    resumes where it stopped); one recorded with other params (another --epochs, say) stops the study
    before anything runs, unless `force` replaces it.
    """
    from .. import dvc_cli

    _, runs = spec.plan()
    have = recorded(root)
    conflicts = []
    for run in runs:
        if run.name in have and not force:
            bad = mismatches(have[run.name]["params"], run.expect)
            if bad:
                conflicts.append(f"{run.name}: {'; '.join(bad)}")
    if conflicts:
        raise StudyError("experiments of these names are already recorded on HEAD with other params:\n  "
                         + "\n  ".join(conflicts) + "\nre-run with --force to replace them, or pick another "
                         "--prefix (dvc exp remove <name> deletes one)")
    failed = []
    for i, run in enumerate(runs, 1):
        tag = f"[{i}/{len(runs)}] {run.name}"
        if (root / STOP_FILE).exists() and not dry_run:
            (root / STOP_FILE).unlink()
            echo(f"{tag}: {STOP_FILE} found: stopping before this run (run the study again to resume)")
            break
        if run.name in have and not force:
            echo(f"{tag}: already recorded ({have[run.name]['rev'][:7]}), skipped")
            continue
        args = dvc_args(run)
        if run.name in have:
            echo(f"{tag}: dvc exp remove {run.name}   (--force: replacing {have[run.name]['rev'][:7]})")
        echo(f"{tag}: dvc {' '.join(args)}")
        if dry_run:
            continue
        if run.name in have:
            removed = dvc_cli.run_dvc(root, ["exp", "remove", run.name])
            if not removed.ok:
                raise StudyError(f"dvc exp remove {run.name} failed: {removed.error_summary()}")
        t0 = time.monotonic()
        result = dvc_cli.run_dvc(root, args, on_line=lambda line: echo(f"    {line}"))
        ran = [s for s, o in result.outcomes.items() if o == dvc_cli.RAN]
        if result.ok:
            echo(f"{tag}: done (stages run: {', '.join(ran) or 'none'}) in {time.monotonic() - t0:.0f} s")
        else:
            failed.append(run.name)
            echo(f"{tag}: FAILED (dvc exit {result.returncode}): {result.error_summary()}")
    return failed
