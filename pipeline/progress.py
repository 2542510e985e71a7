"""One rule for progress output: tqdm bars on an interactive terminal, plain log lines in CI and pipes."""
import os
import sys


def show_progress() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")
