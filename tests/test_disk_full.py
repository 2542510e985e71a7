"""A full disk (ENOSPC/EDQUOT) ends every writer in one DiskFullError line naming the file and the free space.

Each writer is tried against a simulated full disk (a patched `open` whose writes fail with ENOSPC once a
byte budget is spent, the way the kernel reports it: no file name) and, where mounting works, a real
1 MB tmpfs. Afterwards no temporary (`.tmp`, `.partial`, a `.partial/` folder) may remain and an earlier
output must be untouched. Any other failure must remove the temporaries too.
"""
from __future__ import annotations

import builtins
import errno
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.io_safety import AtomicDir as SharedAtomicDir
from pipeline.io_safety import DiskFullError, atomic_write

REPO = Path(__file__).resolve().parents[1]
OLD = b"earlier output\n"


class _FullFile:
    """A real file object whose writes fail with ENOSPC once the shared budget is spent."""

    def __init__(self, real, budget: dict):
        self._real, self._budget = real, budget

    def write(self, data):
        n = len(data)
        if n > self._budget["left"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget["left"] -= n
        return self._real.write(data)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __iter__(self):
        return iter(self._real)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()
        return False


@pytest.fixture
def full_disk(monkeypatch, tmp_path):
    """Files opened for writing under tmp_path get `budget["left"]` bytes in all (set it), then ENOSPC."""
    budget = {"left": float("inf")}
    real_open = builtins.open
    root = os.path.abspath(tmp_path)

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") \
                and os.path.abspath(os.fsdecode(file)).startswith(root):
            return _FullFile(f, budget)
        return f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    return budget


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".partial")) or ".tmp." in p.name)


def _assert_disk_full(err: pytest.ExceptionInfo, dest: Path) -> None:
    msg = str(err.value)
    assert isinstance(err.value, DiskFullError) and err.value.errno == errno.ENOSPC
    assert msg.startswith(f"{dest}: disk full writing it (") and " free on /" in msg and "\n" not in msg, msg


def _old(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(OLD)
    return dest


# --- one unit test per kind of writer -------------------------------------------------------------------

def test_write_metrics(tmp_path, full_disk):
    from pipeline.stages._common import write_metrics

    dest = _old(tmp_path / "metrics.json")
    full_disk["left"] = 10
    with pytest.raises(OSError) as err:
        write_metrics(dest, {"top1": 0.5, "names": ["x" * 50] * 10})
    _assert_disk_full(err, dest)
    assert re.search(r"needed ~[\d,]+ bytes", str(err.value))  # the size of the JSON is known before writing
    assert dest.read_bytes() == OLD and _leftovers(tmp_path) == []


def test_check_params_stage(tmp_path, full_disk, monkeypatch, capsys):
    from pipeline.config import load_params
    from pipeline.stages import _common, check_params

    params = load_params(REPO / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_common, "load_params", lambda: params)
    _old(tmp_path / "data/params.json")
    full_disk["left"] = 0
    with pytest.raises(SystemExit) as exit_:
        check_params.main()
    assert exit_.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[check_params] error: data/params.json: disk full writing it")
    assert (tmp_path / "data/params.json").read_bytes() == OLD and _leftovers(tmp_path) == []


def test_checkpoint_torch_save(tmp_path, full_disk):
    from pipeline.train.checkpoint import atomic_save

    dest = _old(tmp_path / "backbone.pt")
    full_disk["left"] = 100_000
    with pytest.raises(OSError) as err:  # torch.save itself raises RuntimeError("unexpected pos ...")
        atomic_save({"w": torch.zeros(200_000)}, dest)
    _assert_disk_full(err, dest)
    assert "needed ~800,000 bytes" in str(err.value)  # estimated from the tensors
    assert dest.read_bytes() == OLD and _leftovers(tmp_path) == []


def test_figure(tmp_path, full_disk):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.evaluation.plots import save_figure

    dest = _old(tmp_path / "curve.png")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    full_disk["left"] = 100
    with pytest.raises(OSError) as err:
        save_figure(fig, dest)
    _assert_disk_full(err, dest)
    assert dest.read_bytes() == OLD and _leftovers(tmp_path) == []


def test_curve_csv(tmp_path, full_disk, monkeypatch):
    from pipeline.stages import linear_eval

    monkeypatch.setattr(linear_eval, "OUT", tmp_path)
    dest = _old(tmp_path / "curve.csv")
    curve = [{"epoch": e, "val_top1": 0.1 * e} for e in range(1, 2000)]
    full_disk["left"] = 1000
    with pytest.raises(OSError) as err:
        linear_eval._write_curve({"pretrained": {"curve": curve}, "random_init": {"curve": curve}})
    _assert_disk_full(err, dest)
    assert dest.read_bytes() == OLD and _leftovers(tmp_path) == []


def _images(folder: Path, n: int) -> list[tuple[str, str]]:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        out.append((str(path), f"img/{i}.png"))
    return out


def test_beton_and_sidecar(tmp_path, full_disk):
    from pipeline.ffcv_io.encode import EncodeSettings
    from pipeline.ffcv_io.sidecar import sidecar_path, write_sidecar
    from pipeline.ffcv_io.writer import write_beton

    images = _images(tmp_path / "img", 8)
    settings = EncodeSettings(32, "raw", 90, 0.0)
    dest = _old(tmp_path / "out/train.beton")
    full_disk["left"] = 5000
    with pytest.raises(OSError) as err:
        write_beton(dest, images, {"label": list(range(8))}, settings)
    _assert_disk_full(err, dest)
    assert dest.read_bytes() == OLD and _leftovers(tmp_path) == []

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path\n")
    side = _old(sidecar_path(dest))
    full_disk["left"] = 20
    with pytest.raises(OSError) as err:
        write_sidecar(dest, manifest=manifest, selection={}, root=".", settings={}, fields=["image"], num_samples=8)
    _assert_disk_full(err, side)
    assert side.read_bytes() == OLD and _leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["pipeline.data.generate_common", "pipeline.io_safety"])
def test_atomic_dir(tmp_path, full_disk, where):
    import importlib

    AtomicDir = importlib.import_module(where).AtomicDir
    dest = tmp_path / "data/beton"
    _old(dest / "a.txt")
    full_disk["left"] = 1500
    with pytest.raises(OSError) as err:
        with AtomicDir(dest) as tmp:
            (tmp / "a.txt").write_bytes(b"1" * 1000)
            (tmp / "b.txt").write_bytes(b"2" * 1000)
    _assert_disk_full(err, dest)  # the kernel's error names no file: the folder is named
    assert "needed more than the 1,000 bytes written before it filled" in str(err.value)
    assert (dest / "a.txt").read_bytes() == OLD and _leftovers(tmp_path) == []

    # A DiskFullError from a writer inside is re-named as the file will be called in the finished folder.
    full_disk["left"] = 10
    with pytest.raises(OSError) as err:
        with AtomicDir(dest) as tmp:
            from pipeline.stages._common import write_metrics
            write_metrics(tmp / "metrics.json", {"a": 1})
    _assert_disk_full(err, dest / "metrics.json")
    assert (dest / "a.txt").read_bytes() == OLD and _leftovers(tmp_path) == []


def _plot(val, keep, shown, path):
    """Stands in for coco_plot.plot_predictions: a matplotlib figure saved with save_figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.evaluation.plots import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, path)


def test_coco_write_out(tmp_path, full_disk, monkeypatch):
    from pipeline.evaluation import coco_plot
    from pipeline.stages import coco_finetune

    monkeypatch.setattr(coco_plot, "plot_predictions", _plot)
    out = tmp_path / "data/coco"
    _old(out / "metrics.json")
    full_disk["left"] = 100
    with pytest.raises(OSError) as err:
        coco_finetune._write(out, {"AP": 0.1}, None, None, None)
    _assert_disk_full(err, out / "predictions.png")
    assert (out / "metrics.json").read_bytes() == OLD and _leftovers(tmp_path) == []


# --- any failure, not only a full disk, removes the temporaries ------------------------------------------

def test_other_failures_leave_no_temporaries(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.evaluation import coco_plot
    from pipeline.evaluation.plots import save_figure
    from pipeline.stages import coco_finetune
    from pipeline.train import checkpoint

    dest = _old(tmp_path / "ckpt.pt")

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_save({"w": torch.zeros(3)}, dest)
    assert dest.read_bytes() == OLD and _leftovers(tmp_path) == []

    fig, _ = plt.subplots()
    monkeypatch.setattr(fig, "savefig", lambda path, **kw: (Path(path).write_bytes(b"half"), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        save_figure(fig, tmp_path / "fig.png")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "fig.png").exists()

    def broken_plot(val, keep, shown, path):
        Path(path).write_bytes(b"half")
        raise ValueError("bad prediction")

    monkeypatch.setattr(coco_plot, "plot_predictions", broken_plot)
    with pytest.raises(ValueError):
        coco_finetune._write(tmp_path / "coco", {"AP": 0.1}, None, None, None)
    assert _leftovers(tmp_path) == [] and not (tmp_path / "coco").exists()

    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "x.json") as tmp:
            tmp.write_text("{")
            raise RuntimeError("interrupted")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "x.json").exists()


# --- run_stage: one line, exit 1, no traceback -------------------------------------------------------------

def _run_stage_with(body, monkeypatch, tmp_path, capsys):
    from pipeline.stages import _common

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_common, "load_params", lambda: None)
    with pytest.raises(SystemExit) as exit_:
        _common.run_stage("demo", body)
    captured = capsys.readouterr()
    return exit_.value.code, captured.err.strip().splitlines()


def test_run_stage_reports_disk_full_in_one_line(tmp_path, full_disk, monkeypatch, capsys):
    from pipeline.stages._common import write_metrics

    def body(params):
        Path("data/out").mkdir(parents=True)
        write_metrics(Path("data/out/metrics.json"), {"x": 1})

    full_disk["left"] = 0
    code, lines = _run_stage_with(body, monkeypatch, tmp_path, capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("[demo] error: data/out/metrics.json: disk full writing it (needed ~")
    assert " free on /" in lines[0] and "Traceback" not in lines[0]
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("wrapped", [False, True])
def test_run_stage_last_resort_for_library_errors(tmp_path, monkeypatch, capsys, wrapped):
    """DVCLive, GX or ffcv raising ENOSPC themselves (or wrapped, as torch does): still one line."""
    def body(params):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "dvclive/metrics.json")
        except OSError:
            if wrapped:
                raise RuntimeError("unexpected pos 704 vs 598")
            raise

    code, lines = _run_stage_with(body, monkeypatch, tmp_path, capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("[demo] error: dvclive/metrics.json: disk full writing it (")
    assert " free on /" in lines[0]


def test_run_stage_quota(tmp_path, monkeypatch, capsys):
    def body(params):
        with atomic_write(Path("out.bin")) as tmp:
            tmp.write_bytes(b"x")
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    code, lines = _run_stage_with(body, monkeypatch, tmp_path, capsys)
    assert code == 1 and len(lines) == 1 and lines[0].startswith("[demo] error: out.bin: disk quota exceeded")
    assert _leftovers(tmp_path) == []


def test_sigterm_removes_the_temporary(tmp_path):
    """A stage stopped by SIGTERM (the orchestrator's first signal) cleans up before it exits 143."""
    script = textwrap.dedent("""
        import os, signal
        from pathlib import Path
        from pipeline.io_safety import atomic_write
        from pipeline.stages import _common
        _common.load_params = lambda: None
        def body(params):
            with atomic_write(Path("big.bin")) as tmp:
                tmp.write_bytes(b"x" * 1000)
                os.kill(os.getpid(), signal.SIGTERM)
                import time; time.sleep(30)
        _common.run_stage("demo", body)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 143, proc.stderr
    assert sorted(os.listdir(tmp_path)) == [], os.listdir(tmp_path)


def test_gitignore_covers_temporaries():
    names = ["data/pretrain/backbone.pt.tmp", "data/beton.partial/x.beton.partial", "data/x.beton.json.tmp",
             "reports/curve.png.tmp", "data/coco.partial/metrics.json", "data/validated.partial/summary.json"]
    proc = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=REPO, capture_output=True, text=True)
    assert sorted(proc.stdout.split()) == sorted(names), proc.stdout + proc.stderr


# --- a real full filesystem ------------------------------------------------------------------------------

@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True,
                              text=True)
    except FileNotFoundError as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_real_full_tmpfs(tiny_fs):
    from pipeline.stages._common import write_metrics
    from pipeline.train.checkpoint import atomic_save

    ckpt = _old(tiny_fs / "checkpoint.pt")
    with pytest.raises(DiskFullError) as err:
        atomic_save({"model": torch.zeros(500_000)}, ckpt)  # 2 MB of floats on a 1 MB filesystem
    _assert_disk_full(err, ckpt)
    assert f"free on {tiny_fs})" in str(err.value) and "needed ~2.0 MB" in str(err.value)
    assert err.value.free > 900_000  # measured after the temporary was removed
    assert sorted(os.listdir(tiny_fs)) == ["checkpoint.pt"] and ckpt.read_bytes() == OLD

    metrics = tiny_fs / "metrics.json"
    with pytest.raises(DiskFullError) as err:
        write_metrics(metrics, {"values": list(range(300_000))})
    _assert_disk_full(err, metrics)
    assert sorted(os.listdir(tiny_fs)) == ["checkpoint.pt"]

    with pytest.raises(DiskFullError) as err:
        with SharedAtomicDir(tiny_fs / "beton") as tmp:
            for i in range(4):
                (tmp / f"{i}.bin").write_bytes(b"x" * 400_000)
    _assert_disk_full(err, tiny_fs / "beton")
    assert sorted(os.listdir(tiny_fs)) == ["checkpoint.pt"]
    json.loads(json.dumps(err.value.args))  # a plain message, picklable/serialisable
