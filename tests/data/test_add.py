"""`python -m pipeline.data add`: inspect your folders, refuse what cannot work, write a data group that composes."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.data.add import AddError, add, use
from pipeline.data.generate_classification import generate_classification

REPO = Path(__file__).resolve().parents[2]
SMALL = {"classes": 3, "image_size": 32, "train_per_class": 12, "val_per_class": 3, "palette_size": 2,
         "scale": [0.6, 0.9], "max_distractors": 0, "jpeg_quality": 90}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mine") / "imagefolder"
    generate_classification(root, SMALL, seed=3)
    return root


@pytest.fixture()
def conf(tmp_path) -> Path:
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    return tmp_path / "conf"


def _compose(conf: Path, overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(conf), version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    OmegaConf.resolve(cfg)
    return OmegaConf.to_container(cfg)


def test_add_writes_a_group_that_composes_and_validates(folder, conf):
    from pipeline.config import validate_params

    lines = []
    path = add("mine", folder, conf_dir=conf, batch_size=16, git_add=False, echo=lines.append)
    assert path == conf / "data/mine.yaml"
    text = path.read_text()
    assert "3 classes; 36 train images (smallest class 12), 9 val images" in text
    assert "image sizes 32x32 to 32x32" in text and "modes RGB" in text
    group = yaml.safe_load(text)
    assert group["name"] == "mine" and group["num_classes"] == 3
    assert group["classification"] == {"root": str(folder.resolve()), "train_split": "train", "val_split": "val"}
    assert group["sysu"]["root"] == group["coco"]["root"] == "data/absent"  # not given: off, never the demo's
    raw = _compose(conf, ["data=mine", "train.batch_size=16"])
    params = validate_params(raw)
    assert params.data.name == "mine" and params.data.classification.root == str(folder.resolve())
    assert not params.data.sysu.provided and "provides no COCO set" in params.data.skipped_reason("coco")
    assert any("SYSU-30k not given: off (reid_eval records status skipped)" in line for line in lines)
    assert any("2 steps per epoch" in line for line in lines)
    assert lines[-1].startswith("next: dvc exp run -S data=mine")
    with pytest.raises(AddError, match="already exists; pick another name or pass --force"):
        add("mine", folder, conf_dir=conf, batch_size=16, git_add=False, echo=lines.append)
    add("mine", folder, conf_dir=conf, batch_size=16, git_add=False, force=True, embedded_evals=True,
        echo=lines.append)
    group = yaml.safe_load(path.read_text())
    assert group["sysu"]["root"] == "data/embedded/sysu30k" and group["coco"]["root"] == "data/embedded/coco"


def test_add_refuses_what_cannot_work_naming_the_folder(folder, conf, tmp_path):
    def refused(root, match, **kw):
        with pytest.raises(AddError, match=match):
            add("x", root, conf_dir=conf, git_add=False, echo=lambda _: None, **({"batch_size": 16} | kw))
        assert not (conf / "data/x.yaml").exists()

    refused(tmp_path / "nowhere", "not a folder")
    no_val = tmp_path / "no_val"
    shutil.copytree(folder / "train", no_val / "train")
    refused(no_val, r"no 'val' split folder \(found: train\).*--val-split")
    one = tmp_path / "one"
    shutil.copytree(folder / "train/circle", one / "train/circle")
    shutil.copytree(folder / "val/circle", one / "val/circle")
    refused(one, "1 class folder .*at least 2 classes")
    refused(folder, "36 training images, fewer than one batch of train.batch_size = 128", batch_size=128)
    stray = tmp_path / "stray"
    shutil.copytree(folder, stray)
    (stray / "val/unicorn").mkdir()
    shutil.copy(next((folder / "val/circle").iterdir()), stray / "val/unicorn/a.jpg")
    refused(stray, "class folder.*unicorn not in train/")
    with pytest.raises(AddError, match="name 'bad name'"):
        add("bad name", folder, conf_dir=conf, git_add=False, batch_size=16)


def test_too_small_a_class_is_refused(folder, conf, tmp_path):
    thin = tmp_path / "thin"
    shutil.copytree(folder, thin)
    for extra in sorted((thin / "train/square").iterdir())[5:]:
        extra.unlink()
    with pytest.raises(AddError, match=r"class\(es\) square have fewer than 10 training images \(5\)"):
        add("thin", thin, conf_dir=conf, git_add=False, batch_size=16, echo=lambda _: None)


def test_command_line_stages_the_group_with_git(folder, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "conf", repo / "conf")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    proc = subprocess.run([sys.executable, "-m", "pipeline.data", "add", "mine", "--classification", str(folder),
                           "--batch-size", "16", "--conf-dir", str(repo / "conf")], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "staged with git add" in proc.stdout
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=repo, capture_output=True, text=True)
    assert staged.stdout.split() == ["conf/data/mine.yaml"]
    proc = subprocess.run([sys.executable, "-m", "pipeline.data", "add", "mine", "--classification", str(folder),
                           "--conf-dir", str(repo / "conf")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("data add: error: ") and "Traceback" not in proc.stderr


def test_use_makes_the_group_the_default_so_later_experiments_stay_on_it(folder, conf):
    add("mine", folder, conf_dir=conf, batch_size=16, git_add=False, echo=lambda _: None)
    lines = []
    use("mine", conf, git_add=False, echo=lines.append)
    assert "  - data: mine" in (conf / "config.yaml").read_text()
    assert lines[0].endswith("defaults now use data=mine (was embedded)")
    assert validate_params_of(conf, ["loss=median"]).data.name == "mine"  # another -S, still the user's data
    with pytest.raises(AddError, match=r"data group 'nope': no .*nope.yaml \(known: .*mine"):
        use("nope", conf, git_add=False)


def validate_params_of(conf, overrides):
    from pipeline.config import validate_params

    return validate_params(_compose(conf, overrides))
