"""`dvc exp run` with the workspace guarded: `python -m flows.exp -S loss.k=3 [other dvc exp run options]`.

Plain `dvc exp run` force-checks-out DVC's cached outputs first (a `dvc add`-tracked dataset you edited is
restored, files you added are deleted) and leaves params.yaml and dvc.lock modified when the run fails or is
interrupted. This wrapper refuses to start while `dvc add`-tracked data differs from its recorded version
(naming the files) and puts params.yaml and dvc.lock back after a failed or interrupted run. See
docs/data-safety.md.
"""
from __future__ import annotations

import sys

from pipeline import dvc_cli


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    try:
        root = dvc_cli.project_root()
        run = dvc_cli.exp_run(root, args, on_line=print)
    except (dvc_cli.ProjectError, dvc_cli.TrackedDataChanged) as e:
        print(f"flows.exp: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # exp_run has already put params.yaml and dvc.lock back
        print("flows.exp: interrupted; params.yaml and dvc.lock restored", file=sys.stderr)
        return 130
    if not run.ok:
        print(f"flows.exp: dvc exp run failed ({run.returncode}); params.yaml and dvc.lock restored",
              file=sys.stderr)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
