"""`flows.dvc_cli.exp_run` (behind `python -m flows.exp`, the Prefect pipeline and sweep): a workspace
experiment keeps and records `dvc add`-tracked data the user changed, a queued one is refused while such
data differs from its record, and a failed or killed run leaves params.yaml and dvc.lock as they were.
Real git + DVC in a tiny repository (a few seconds each)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows import exp
from pipeline import dvc_cli

BIN = Path(sys.executable).parent


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300,
                          env=dvc_cli.stage_env(root) | {"DVC_NO_ANALYTICS": "1"})
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


def commit(root: Path) -> None:
    run(root, "git", "add", "-A")
    run(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "state")


@pytest.fixture
def repo(tmp_path) -> Path:
    run(tmp_path, "git", "init", "-q")
    run(tmp_path, str(BIN / "dvc"), "init", "-q")
    return tmp_path


def add_dataset(root: Path) -> Path:
    data = root / "mydata" / "cls"
    data.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (data / name).write_bytes(name.encode() * 10)
    run(root, str(BIN / "dvc"), "add", "-q", "mydata")
    return data


def _project_with_dataset(repo: Path) -> Path:
    data = add_dataset(repo)
    (repo / "params.yaml").write_text("x: 1\n")
    (repo / "dvc.yaml").write_text("stages:\n  s:\n    cmd: ls -R mydata > out.txt\n    deps: [mydata]\n"
                                   "    params: [x]\n    outs: [out.txt]\n")
    commit(repo)
    (data / "a.jpg").write_bytes(b"damaged")
    (data / "new.jpg").write_bytes(b"added by the user")
    return data


def test_queued_experiment_over_changed_dvc_add_data_is_refused_naming_the_files(repo):
    data = _project_with_dataset(repo)
    assert dvc_cli.tracked_data_paths(repo) == ["mydata"]
    with pytest.raises(dvc_cli.TrackedDataChanged) as e:
        dvc_cli.exp_run(repo, ["--queue", "-S", "x=2"])
    assert "modified: mydata/cls/a.jpg" in str(e.value) and "added: mydata/cls/new.jpg" in str(e.value)
    assert (data / "a.jpg").read_bytes() == b"damaged"
    assert (data / "new.jpg").read_bytes() == b"added by the user"
    queued = run(repo, str(BIN / "dvc"), "queue", "status").stdout
    assert "Queued" not in queued  # nothing was queued


def test_the_command_line_wrapper_refuses_with_one_line_and_exit_2(repo, monkeypatch, capsys):
    _project_with_dataset(repo)
    monkeypatch.chdir(repo)
    assert exp.main(["--temp", "-S", "x=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flows.exp: dvc add-tracked data differs") and "mydata/cls/new.jpg" in err


def test_workspace_experiment_keeps_changed_dvc_add_data_and_records_it(repo):
    data = _project_with_dataset(repo)
    record = (repo / "mydata.dvc").read_text()
    result = dvc_cli.exp_run(repo, ["-S", "x=2"])
    assert result.ok, result.error_summary()
    assert (data / "a.jpg").read_bytes() == b"damaged"
    assert (data / "new.jpg").read_bytes() == b"added by the user"
    assert "new.jpg" in (repo / "out.txt").read_text()  # the experiment ran on the user's files
    assert (repo / "mydata.dvc").read_text() != record   # and records their new version
    assert dvc_cli.tracked_data_changes(repo) == {}


@pytest.mark.parametrize("how", ["fails", "killed"])
def test_failed_or_killed_experiment_leaves_params_and_lock_as_they_were(repo, how):
    # The stage passes on x=1 (recorded in dvc.lock) and fails, or kills DVC itself, on any other value.
    action = "exit 3" if how == "fails" else "kill -9 $PPID"
    (repo / "stage.sh").write_text(f"grep -qx 'x: 1' params.yaml && cp params.yaml out.txt || {{ {action}; }}\n")
    (repo / "params.yaml").write_text("x: 1\n")
    (repo / "dvc.yaml").write_text("stages:\n  s:\n    cmd: sh stage.sh\n    deps: [stage.sh]\n    params: [x]\n"
                                   "    outs: [out.txt]\n")
    run(repo, str(BIN / "dvc"), "repro", "-q")
    commit(repo)
    before = {name: (repo / name).read_bytes() for name in ("params.yaml", "dvc.lock")}
    result = dvc_cli.exp_run(repo, ["-S", "x=2"])
    assert not result.ok
    for name, content in before.items():
        assert (repo / name).read_bytes() == content, name
    staged = run(repo, "git", "diff", "--cached", "--name-only").stdout.split()
    assert "params.yaml" not in staged and "dvc.lock" not in staged
