"""The shared params file: composition from conf/, the drift check and every schema rejection."""
from __future__ import annotations

import copy

import pytest
from pipeline.config import CONF_DIR, PARAMS_FILE, ParamsError, compose, load_params, read_yaml, validate_params
from pipeline.methods import METHOD_LOSSES


@pytest.fixture(scope="module")
def raw() -> dict:
    return read_yaml(PARAMS_FILE)


def test_params_yaml_is_what_conf_composes_to(raw):
    # DVC's Hydra step rewrites params.yaml only on `dvc exp run`; plain `dvc repro` reads the file as is.
    assert raw == compose(), "params.yaml drifted from conf/: run `python -m pipeline.config compose`"


def test_committed_params_are_valid():
    p = load_params(PARAMS_FILE)
    assert p.loss.name == "truncated_triplet" and (p.loss.k, p.loss.k_end) == (2, 10)


@pytest.mark.parametrize("group", sorted(p.stem for p in (CONF_DIR / "loss").glob("*.yaml")))
def test_every_loss_group_composes_and_validates_with_its_method(group):
    name = read_yaml(CONF_DIR / "loss" / f"{group}.yaml")["name"]
    method = next(m for m, loss in METHOD_LOSSES.items() if loss == name)
    assert validate_params(compose([f"method={method}", f"loss={group}"])).loss.name == name


@pytest.mark.parametrize("group", ["data=imagenet", "model=resnet50"])
def test_other_groups_compose_and_validate(group):
    validate_params(compose([group]))


def test_group_switch_changes_the_loss():
    assert compose(["loss=median"])["loss"]["variant"] == "median"
    assert compose(["loss.k=3"])["loss"]["k"] == 3


def _mutated(raw, section, key, value):
    r = copy.deepcopy(raw)
    r[section][key] = value
    return r


@pytest.mark.parametrize(
    "section,key,value,needle",
    [
        ("loss", "k", 0, "loss.k = 0"),
        ("loss", "k", 11, "loss.k = 11 > loss.k_end = 10"),
        ("loss", "name", "triplet", "loss.name = 'triplet'"),
        ("loss", "variant", "mean", "loss.variant = 'mean'"),
        ("loss", "kk", 3, "loss.kk: loss 'truncated_triplet' has no such key"),
        ("train", "lr", -0.1, "train.lr = -0.1"),
        ("train", "batch_size", 8, "train.batch_size = 8 gives 7 negatives"),
        ("train", "epochs", "many", "train.epochs = 'many'"),
        ("train", "precision", "fp8", "train.precision = 'fp8'"),
        ("validate", "on_error", "ignore", "validate.on_error = 'ignore'"),
        ("validate", "min_side", 10000, "validate.min_side = 10000 > validate.max_side"),
    ],
)
def test_schema_rejections_name_key_and_value(raw, section, key, value, needle):
    with pytest.raises(ParamsError) as e:
        validate_params(_mutated(raw, section, key, value))
    assert needle in str(e.value)


def test_batch_check_follows_the_variant(raw):
    r = _mutated(raw, "train", "batch_size", 8)
    r["loss"]["variant"] = "median"  # needs one negative only
    assert validate_params(r).train.batch_size == 8
    r["loss"].update(variant="rank", k=8)
    with pytest.raises(ParamsError, match="fewer than the 8"):
        validate_params(r)


def test_missing_section_and_unknown_top_level_key(raw):
    r = copy.deepcopy(raw)
    del r["loss"]
    r["lss"] = {}
    msg = str(pytest.raises(ParamsError, validate_params, r).value)
    assert "loss: missing required key" in msg and "lss: unknown key" in msg


def test_load_params_errors_name_the_file(tmp_path):
    missing = tmp_path / "params.yaml"
    with pytest.raises(ParamsError, match="not found"):
        load_params(missing)
    missing.write_text("loss: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(missing)


def test_a_python_object_tag_in_params_is_refused_not_constructed(tmp_path):
    """The safe loader never builds objects: a tag that would run a command is a YAML error naming the file."""
    marker = tmp_path / "pwned"
    params = tmp_path / "params.yaml"
    params.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ParamsError, match="not valid YAML") as e:
        load_params(params)
    assert str(params) in str(e.value)
    assert not marker.exists()


def test_every_generated_world_is_kept_out_of_git_and_of_experiment_commits():
    """`generate`'s outputs are `cache: false`: without a .gitignore beside them, every `dvc exp run` in that world
    would commit the generated images into the experiment (and the study's bundle)."""
    from ruamel.yaml import YAML

    out_dirs = {"data/embedded"}
    for group in (CONF_DIR / "data").glob("*.yaml"):
        generate = (YAML(typ="safe").load(group.read_text()) or {}).get("generate") or {}
        if generate.get("out_dir"):
            out_dirs.add(generate["out_dir"])
    assert "data/embedded_many" in out_dirs
    for out_dir in sorted(out_dirs):
        ignore = (CONF_DIR.parent / out_dir / ".gitignore").read_text().split()
        assert {"/imagenet", "/sysu30k", "/coco"} <= set(ignore), out_dir
