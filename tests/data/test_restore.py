"""The way back to pristine generated data: damaged folders are set aside (never deleted) and regenerated
byte for byte, where a plain re-run of generate keeps the damage (the folder plays the user's raw data)."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import compose, validate_params
from pipeline.data import generate_classification as gen_cls
from pipeline.data.restore import restore
from pipeline.data.stamps import damaged, file_digests
from pipeline.stages.generate import generate_once


def _generate(root: Path) -> dict:
    cfg = validate_params(compose(["generate.classification.train_per_class=3",
                                   "generate.classification.val_per_class=1", "generate.classification.classes=3",
                                   "generate.classification.image_size=32"])).generate.classification.model_dump()
    generate_once(root, cfg, 0, lambda: gen_cls.generate_classification(root, cfg, 0), gen_cls)
    return file_digests(root)


def test_a_damaged_set_is_set_aside_and_regenerated_as_it_was(tmp_path):
    out = tmp_path / "data/embedded"
    pristine = _generate(out / "imagenet")
    victim = sorted((out / "imagenet/train").rglob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg")
    (out / "imagenet/train/extra.txt").write_text("added")
    _generate(out / "imagenet")  # generate alone keeps the damaged folder as it is
    assert damaged(out / "imagenet") == {"added": ["train/extra.txt"],
                                         "modified": [victim.relative_to(out / "imagenet").as_posix()]}

    lines = []
    moved = restore(out, damaged_dir=tmp_path / "data/damaged", echo=lines.append)
    assert len(moved) == 1 and moved[0].parent == tmp_path / "data/damaged" and moved[0].name.startswith("imagenet-")
    assert (moved[0] / "train/extra.txt").read_text() == "added", "the damaged copy is kept, not deleted"
    assert "modified 1" in lines[0] and "added 1: train/extra.txt" in lines[0] and lines[-1].startswith("next: dvc repro")
    assert not (out / "imagenet").exists()
    assert _generate(out / "imagenet") == pristine and damaged(out / "imagenet") == {}


def test_pristine_sets_stay_unless_all_is_asked(tmp_path):
    out = tmp_path / "gen"
    _generate(out / "imagenet")
    lines = []
    assert restore(out, damaged_dir=tmp_path / "damaged", echo=lines.append) == []
    assert lines == [f"{out / 'imagenet'}: as generated"] and (out / "imagenet").is_dir()
    assert len(restore(out, every=True, damaged_dir=tmp_path / "damaged", echo=lines.append)) == 1
