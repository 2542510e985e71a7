"""Imports run one way (docs/architecture.md): flows -> stages -> library, and inside the library training
knows nothing of evaluation (the monitor is passed in). Checked twice: statically, over every import
statement of the package (function-level ones included), and at run time, by what an import loads."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
ENTRY_POINTS = ("stages", "bench", "study/__main__.py")  # command-line entry points may import stages


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved against its package)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def library_files() -> list[Path]:
    return [f for f in sorted(PACKAGE.rglob("*.py"))
            if not any(f.relative_to(PACKAGE).as_posix().startswith(entry) for entry in ENTRY_POINTS)]


def offending(files, prefixes) -> dict[str, list[str]]:
    out = {}
    for f in files:
        bad = sorted(m for m in imported_modules(f) if any(m == p or m.startswith(p + ".") for p in prefixes))
        if bad:
            out[f.relative_to(ROOT).as_posix()] = bad
    return out


def test_the_import_reader_resolves_relative_imports(tmp_path):
    # Guards the checks below: a reader that resolved nothing would find no offence anywhere.
    names = imported_modules(PACKAGE / "train" / "loop.py")
    assert "pipeline.methods.registry" in names and "pipeline.train.checkpoint" in names


def test_library_code_imports_no_stage_and_no_flow():
    assert offending(library_files(), ("flows", "pipeline.stages")) == {}


def test_training_imports_nothing_from_evaluation():
    training = [f for f in library_files() if f.relative_to(PACKAGE).parts[0] in ("train", "models", "methods", "losses")]
    assert training and offending(training, ("pipeline.evaluation",)) == {}


def test_importing_losses_and_training_loads_no_evaluation_stage_or_flow_module():
    code = ("import json, sys; import pipeline.losses, pipeline.methods.registry, pipeline.train.loop, pipeline.dvc_cli; "
            "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert "pipeline.train.loop" in loaded
    assert [m for m in loaded if m.split(".")[0] == "flows" or m.startswith(("pipeline.stages", "pipeline.evaluation"))] == []
