"""The tests' project copies take the code of the working tree, never the leftovers of the user's own runs."""
from __future__ import annotations

import subprocess
from pathlib import Path

from small_project import _project_files


def test_untracked_pipeline_outputs_of_an_interrupted_repro_are_not_copied(tmp_path):
    repo = tmp_path / "repo"
    for rel in ("pipeline/stage.py", "data/linear/metrics.json", "data/validated/.gitignore"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("x\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    # What a Ctrl+C'd `dvc repro` leaves: its .gitignore gone, the output untracked and unignored; and new,
    # uncommitted code next to it.
    (repo / "data/validated/.gitignore").unlink()
    (repo / "data/validated/manifests").mkdir()
    (repo / "data/validated/manifests/classification.csv").write_text("path\n")
    (repo / "pipeline/new_module.py").write_text("y\n")
    files = _project_files(repo)
    assert "pipeline/new_module.py" in files and "pipeline/stage.py" in files
    assert "data/linear/metrics.json" in files  # tracked: the committed metrics come along
    assert not [f for f in files if f.startswith("data/validated/manifests")]
