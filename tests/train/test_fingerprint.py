"""The resume fingerprint covers the params, data and code the pretrain stage depends on, and nothing else."""
from __future__ import annotations

import json

from pipeline.config import compose, validate_params
from pipeline.train.fingerprint import run_fingerprint


def _params(*overrides):
    return validate_params(compose(list(overrides)))


def test_same_inputs_same_fingerprint_and_downstream_keys_do_not_count():
    base = run_fingerprint(_params())
    assert run_fingerprint(_params()) == base
    assert run_fingerprint(_params("eval.coco.lr=0.05", "eval.reid.batch_size=7")) == base


def test_pretrain_params_and_the_monitors_count():
    base = run_fingerprint(_params())
    changed = {run_fingerprint(_params(o)) for o in ("loss.k=3", "train.lr=0.01", "seed=1",
                                                      "eval.knn.k=20", "eval.linear.lr=0.5",
                                                      "convert.loader.crop_scale=[0.5,1.0]")}
    assert base not in changed and len(changed) == 6


def test_other_data_under_the_same_params_is_another_run(tmp_path):
    sidecar = tmp_path / "classification_train.beton.json"
    sidecar.write_text(json.dumps({"manifest_sha256": "a" * 64, "samples": 5000}))
    params = _params()
    first = run_fingerprint(params, [sidecar])
    assert run_fingerprint(params, [sidecar]) == first
    sidecar.write_text(json.dumps({"manifest_sha256": "b" * 64, "samples": 5000}))
    assert run_fingerprint(params, [sidecar]) != first
    assert first != run_fingerprint(params)
