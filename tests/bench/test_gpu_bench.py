"""scripts/gpu_check.sh and `python -m pipeline.bench gpu`: the CPU half of the GPU check, at tiny sizes.

The script is what runs on a GPU machine (docs/speed.md); here it runs the same bench on the CPU with
12-image batches of 32 px views, so that the day a GPU is lent the prepared command works the first time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.bench import gpu

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_script_runs_both_profiles_on_cpu_and_writes_the_json(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "GPU_CHECK_PYTHON": sys.executable, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--device", "cpu", "--batch-size", "12",
                           "--image-size", "32", "--steps", "1", "--warmup", "0", "--peak-size", "128"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert (tmp_path / "gpu.log").read_text().startswith("torch ")
    # The paper profile: ResNet-50 in bf16 autocast and channels_last, measured against the bf16 peak.
    assert (result["paper_arch"], result["paper_precision"], result["paper_channels_last"]) == ("resnet50", "bf16", True)
    assert (result["default_arch"], result["default_precision"]) == ("resnet18", "fp32")
    for name, peak in (("paper", "peak_bf16_gflop_s"), ("default", "peak_fp32_gflop_s")):
        assert result[f"{name}_batch_size"] == 12 and result[f"{name}_image_size"] == 32
        assert result[f"{name}_img_s"] > 0 and result[f"{name}_gflop_per_image"] > 0
        assert result[f"{name}_efficiency"] == pytest.approx(result[f"{name}_gflop_s"] / result[peak], rel=0.02)
    # ResNet-50 costs about 2.3x ResNet-18's FLOPs per image at any size (4.1 vs 1.8 GFLOP at 224 px).
    assert 1.8 < result["paper_gflop_per_image"] / result["default_gflop_per_image"] < 3.5


def test_synthetic_batches_are_sized_like_a_loader_and_live_on_the_device():
    batches = gpu.SyntheticTwoViews(4, 16, torch.device("cpu"), distinct=3)
    assert len(batches) == 3 and len(list(batches)) == 3
    v1, v2, labels = next(iter(batches))
    assert v1.shape == v2.shape == (4, 3, 16, 16) and labels.shape == (4,) and not torch.equal(v1, v2)


def test_unknown_profile_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        gpu.main(["--profiles", "paper,huge", "--device", "cpu"])
    assert "paper,huge" in capsys.readouterr().err
