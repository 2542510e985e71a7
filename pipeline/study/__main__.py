"""python -m pipeline.study {plan,run,report}: the learning-efficiency study (see pipeline/study/__init__.py).

Run it from the project root with the venv's bin first on PATH (the stage commands call `python`);
`make study` / `make report` do both.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .runs import DEFAULT_LOSSES, LOSSES, SEEDS, WORLDS, StudyError, StudySpec


def _spec_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--losses", help=f"comma-separated, some of {','.join(LOSSES)} "
                                     f"(default {','.join(DEFAULT_LOSSES)})")
    ap.add_argument("--worlds", help=f"comma-separated data groups, some of {','.join(WORLDS)} (default: both)")
    ap.add_argument("--seeds", type=int, help=f"seeds per loss, 0..N-1 (default {len(SEEDS)})")
    ap.add_argument("--ks", help="ranks k of the smoothed triplet's sweep, comma-separated, e.g. 1,2,3,5,10 "
                                 "(default: no sweep)")
    ap.add_argument("--epochs", type=int, help="train.epochs of every run (default: what conf/ composes)")
    ap.add_argument("-S", "--set-param", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="another override for every run (e.g. train.lr=0.5); repeatable")
    ap.add_argument("--prefix", default="eff", help="experiment name prefix (default eff)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.study", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    plan = sub.add_parser("plan", help="list the study's points and runs with their overrides")
    run = sub.add_parser("run", help="run the study's missing runs as DVC experiments (pretrain only)")
    rep = sub.add_parser("report", help="write reports/efficiency.md and its PNGs from the recorded runs")
    save = sub.add_parser("save", help="write the recorded runs to reports/efficiency-runs.bundle (commit it)")
    for p in (plan, run, rep, save):
        _spec_args(p)
    run.add_argument("--force", action="store_true", help="re-run (replace) runs already recorded")
    run.add_argument("--dry-run", action="store_true", help="print the dvc commands without running them")
    rep.add_argument("--rev", default="HEAD", help="baseline commit whose experiments to read (default HEAD)")
    rep.add_argument("--out", default="reports", help="output folder (default reports/)")
    args = ap.parse_args(argv)
    root = Path.cwd()
    try:
        if not (root / "dvc.yaml").is_file():
            raise StudyError(f"{root}: no dvc.yaml here; run the study from the project root")
        spec = StudySpec.from_args(args.losses, args.seeds, args.ks, args.epochs, args.extra, args.prefix,
                                   args.worlds)
        if args.cmd == "plan":
            points, runs = spec.plan()
            print(f"{len(points)} points, {len(runs)} runs:")
            for r in runs:
                shared = [f"{p.kind}={p.label}/s{p.seed}" for p in points if p.run == r.name]
                print(f"  {r.name:<34} {' '.join('-S ' + o for o in r.overrides):<100} {', '.join(shared)}")
        elif args.cmd == "run":
            from .runs import run_study

            failed = run_study(root, spec, force=args.force, dry_run=args.dry_run,
                               echo=lambda line: print(line, flush=True))
            if failed:
                print(f"study: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
                return 1
        elif args.cmd == "save":
            from .runs import save_runs

            path, n = save_runs(root, spec)
            print(f"wrote {path.relative_to(root)}: {n} experiment(s); commit it, and `report` reads them back anywhere")
        else:
            from .report import report
            from .runs import load_runs

            loaded = load_runs(root)
            if loaded:
                print(f"fetched {loaded} experiment ref(s) from reports/efficiency-runs.bundle")
            command = "python -m pipeline.study " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
            path = report(root, spec, root / args.out, rev=args.rev, command=command)
            print(f"wrote {path.relative_to(root) if path.is_relative_to(root) else path}")
    except StudyError as e:
        print(f"study: error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # a dvc command that failed (flows.dvc_cli names it and its output)
        print(f"study: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
