"""Where the time of `dvc repro` goes: a fresh clone of a commit, the whole pipeline, seconds per stage.

    python -m pipeline.bench repro [--rev HEAD] [--keep]

Clones the repository at `--rev` into a temporary folder (a fresh clone: no data, no DVC cache, no
checkpoint), runs `dvc repro --force` there with this environment's `dvc` and `python`, and times each stage
from DVC's "Running stage" lines. Forced, because on the machine that wrote the commit's dvc.lock pretraining
is bit-identical, so a plain `dvc repro` would find the evaluation stages' committed outputs current and
skip them (`--no-force` measures exactly that). Prints a Markdown table (stage, seconds, share of the total) and returns the
figures (last line: one JSON object). Two commits measured one after the other on one machine give the
ratio docs/pipeline.md quotes (e.g. `--rev 47c0659` and `--rev HEAD`); the clone is deleted unless `--keep`.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_RUNNING = re.compile(r"^Running stage '(?P<stage>[^']+)'")


def stage_seconds(timed_lines: list[tuple[float, str]], end: float) -> dict[str, float]:
    """{stage: seconds} from (time, line) pairs: a stage lasts from its "Running stage" line to the next one
    (or to `end`). DVC's own work between stages (hashing, lock updates) is counted with the stage before."""
    starts = [(t, m["stage"]) for t, line in timed_lines if (m := _RUNNING.match(line.strip()))]
    out = {}
    for i, (t, stage) in enumerate(starts):
        nxt = starts[i + 1][0] if i + 1 < len(starts) else end
        out[stage] = out.get(stage, 0.0) + (nxt - t)
    return out


def table(seconds: dict[str, float], total: float) -> str:
    rows = [f"| `{s}` | {v:.0f} | {100 * v / total:.0f} % |" for s, v in seconds.items()]
    return "\n".join(["| stage | seconds | share |", "|---|---|---|", *rows, f"| total | {total:.0f} | 100 % |"])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str]) -> dict | int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench repro")
    ap.add_argument("--rev", default="HEAD", help="the commit to clone and reproduce (default HEAD)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary clone (its path is printed)")
    ap.add_argument("--no-force", dest="force", action="store_false",
                    help="plain `dvc repro`: stages whose committed outputs match are skipped")
    args = ap.parse_args(argv)
    rev = subprocess.run(["git", "rev-parse", "--short", args.rev], cwd=REPO, capture_output=True, text=True)
    if rev.returncode != 0:
        print(f"bench repro: unknown revision {args.rev!r}: {rev.stderr.strip()}", file=sys.stderr)
        return 2
    commit = rev.stdout.strip()
    work = Path(tempfile.mkdtemp(prefix=f"bench-repro-{commit}-"))
    clone = work / "clone"
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", commit], cwd=clone, check=True)
        bin_dir = Path(sys.executable).parent
        env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
                            "GX_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1", "CI": "1"}
        command = [str(bin_dir / "dvc"), "repro", *(["--force"] if args.force else [])]
        print(f"[bench repro] dvc {' '.join(command[1:])} of {commit} in {clone}", file=sys.stderr)
        t0 = time.monotonic()
        proc = subprocess.Popen(command, cwd=clone, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines = []
        for line in proc.stdout:
            lines.append((time.monotonic() - t0, line))
            if _RUNNING.match(line.strip()):
                print(f"[bench repro] {lines[-1][0]:7.1f} s  {line.strip()}", file=sys.stderr)
        proc.wait()
        total = time.monotonic() - t0
        if proc.returncode != 0:
            print("".join(line for _, line in lines[-30:]), file=sys.stderr)
            print(f"bench repro: dvc repro of {commit} failed ({proc.returncode})", file=sys.stderr)
            return 1
    finally:
        if args.keep:
            print(f"[bench repro] clone kept: {clone}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    seconds = stage_seconds(lines, total)
    print(table(seconds, total))
    return {"bench": "repro", "commit": commit, "forced": args.force, "cpu_model": _cpu_model(), "cores": os.cpu_count(),
            "total_s": round(total, 1), "stages_s": {s: round(v, 1) for s, v in seconds.items()},
            "load_avg_1min": round(os.getloadavg()[0], 2)}
