"""Parameters that pass a type check but cannot work: non-finite floats, and train.device = cuda without CUDA.

Both must stop the pipeline with one line naming the key, before any compute, not minutes later with a
traceback.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from ruamel.yaml import YAML

from pipeline.config import PARAMS_FILE, ParamsError, compose, load_params, read_yaml, validate_params


@pytest.fixture(scope="module")
def raw() -> dict:
    return read_yaml(PARAMS_FILE)


def _set(raw: dict, dotted: str, value) -> dict:
    r = copy.deepcopy(raw)
    *path, key = dotted.split(".")
    node = r
    for part in path:
        node = node[part]
    node[key] = value
    return r


# --- (b) every float of the schema is finite -------------------------------------------------------
FLOAT_KEYS = ["train.lr", "train.weight_decay", "train.warmup_epochs", "loss.margin", "loss.gamma",
              "eval.knn.temperature", "eval.linear.lr", "eval.reid.adapt_lr",
              "eval.reid.adapt_warmup_epochs", "eval.coco.lr"]
NON_FINITE = [float("inf"), float("-inf"), float("nan"), "inf", "-inf", "nan", "Infinity"]


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_non_finite_floats_are_rejected_naming_the_key(raw, key, value):
    with pytest.raises(ParamsError) as e:
        validate_params(_set(raw, key, value))
    assert f"  - {key} = " in str(e.value) and "finite number" in str(e.value)


@pytest.mark.parametrize("method", ["infonce", "simclr"])
def test_a_non_finite_temperature_is_rejected_naming_the_key(method):
    with pytest.raises(ParamsError) as e:
        validate_params(_set(compose([f"method={method}"]), "loss.temperature", float("nan")))
    assert "  - loss.temperature = " in str(e.value) and "finite number" in str(e.value)


def test_non_finite_inside_a_pair_is_rejected(raw):
    r = _set(raw, "generate.classification.scale", [0.5, float("inf")])
    with pytest.raises(ParamsError, match=r"generate\.classification\.scale\.1 = inf: .*finite number"):
        validate_params(r)


@pytest.mark.parametrize("literal", [".inf", "-.inf", ".nan", ".NaN", "'inf'", "'nan'"])
def test_yaml_non_finite_literals_are_rejected(raw, tmp_path, literal):
    path = tmp_path / "params.yaml"
    YAML().dump(_set(raw, "train.lr", "__X__"), path)
    path.write_text(path.read_text().replace("__X__", literal))
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert "train.lr = " in str(e.value) and "finite number" in str(e.value)


# --- (a) train.device = cuda on a machine without CUDA ---------------------------------------------
NO_CUDA = ("[{stage}] error: params.yaml: train.device = 'cuda': CUDA is not available on this machine;"
           " expected 'auto' or 'cpu' here")


@pytest.fixture
def project(raw, tmp_path, monkeypatch) -> Path:
    """A working directory whose params.yaml asks for CUDA, on a machine (as far as torch knows) without it."""
    YAML().dump(_set(raw, "train.device", "cuda"), tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return tmp_path


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if " error: " in line]


def test_check_params_accepts_auto_and_cpu_and_rejects_cuda_without_cuda(raw, project, capsys):
    from pipeline.stages import check_params

    for ok in ("auto", "cpu"):
        YAML().dump(_set(raw, "train.device", ok), project / "params.yaml")
        check_params.main()
        assert (project / "data/params.json").is_file()
        (project / "data/params.json").unlink()
    YAML().dump(_set(raw, "train.device", "cuda"), project / "params.yaml")
    with pytest.raises(SystemExit) as e:
        check_params.main()
    assert e.value.code == 1
    assert _error_lines(capsys) == [NO_CUDA.format(stage="check_params")]
    assert not (project / "data/params.json").exists()


@pytest.mark.parametrize("stage", ["pretrain", "linear_eval", "reid_eval"])
def test_device_stages_stop_with_the_same_one_line_error(project, capsys, monkeypatch, stage):
    import importlib

    module = importlib.import_module(f"pipeline.stages.{stage}")
    if stage == "reid_eval":  # it reads the SYSU manifests first; there are none here
        monkeypatch.setattr(module, "_check_sets", lambda params: {})
    with pytest.raises(SystemExit) as e:
        module.main()
    assert e.value.code == 1
    assert _error_lines(capsys) == [NO_CUDA.format(stage=stage)]
