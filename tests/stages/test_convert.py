"""The convert stage: every split to a .beton with a sidecar, byte-identical re-runs, clean failures."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.config import compose, validate_params
from pipeline.data.generate_classification import generate_classification
from pipeline.data.generate_sysu import generate_sysu
from pipeline.data.manifest import classification_tables, sysu_tables
from pipeline.ffcv_io.datasets import BetonPlan, convert_plan
from pipeline.ffcv_io.encode import EncodeSettings
from pipeline.ffcv_io.writer import read_ints
from pipeline.stages import _common, convert

CLS = {"classes": 4, "image_size": 32, "train_per_class": 8, "val_per_class": 4, "palette_size": 8,
       "scale": [0.5, 0.85], "max_distractors": 2, "jpeg_quality": 90}
SYSU = {"query_ids": 3, "distractors": 4, "train_bags": 2, "images_per_bag": 3, "identities_per_bag": 2,
        "height": 64, "width": 32, "jpeg_quality": 90}
NAMES = ["classification_train", "classification_val", "sysu_train", "sysu_query", "sysu_gallery"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A working directory laid out as the stage expects: datasets and validated manifests under data/."""
    root = tmp_path_factory.mktemp("project")
    generate_classification(root / "data/embedded/imagenet", CLS, seed=0)
    generate_sysu(root / "data/embedded/sysu30k", SYSU, seed=0)
    manifests = root / "data/validated/manifests"
    manifests.mkdir(parents=True)
    tables = classification_tables(root / "data/embedded/imagenet", ("train", "val"))
    tables["classification"].to_csv(manifests / "classification.csv", index=False)
    sysu_tables(root / "data/embedded/sysu30k")["sysu"].to_csv(manifests / "sysu.csv", index=False)
    return root


def _run_stage(monkeypatch, cwd: Path, *overrides: str) -> None:
    params = validate_params(compose(["data.classification.root=data/embedded/imagenet",
                                      "data.sysu.root=data/embedded/sysu30k", *overrides]))
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(_common, "load_params", lambda: params)
    convert.main()


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_writes_every_split_with_sidecars_and_is_byte_identical(project, monkeypatch, capsys):
    _run_stage(monkeypatch, project, "convert.num_workers=2")
    out = project / "data/beton"
    first = _digests(out)
    assert sorted(first) == sorted([f"{n}.beton" for n in NAMES] + [f"{n}.beton.json" for n in NAMES])
    assert "images/s" in capsys.readouterr().err
    _run_stage(monkeypatch, project, "convert.num_workers=0")  # any worker count: the same bytes
    assert _digests(out) == first
    assert not list(project.glob("data/*.partial")) and not list(out.glob("*.partial"))

    manifest = pd.read_csv(project / "data/validated/manifests/classification.csv")
    train = manifest[manifest["split"] == "train"]
    assert read_ints(out / "classification_train.beton", ["label"])["label"].tolist() == train["label"].tolist()
    sysu = pd.read_csv(project / "data/validated/manifests/sysu.csv", dtype={"identity": str})
    gallery = sysu[sysu["split"] == "gallery"]
    fields = read_ints(out / "sysu_gallery.beton", ["label", "camera", "is_distractor"])
    assert fields["label"].tolist() == gallery["label"].tolist()
    assert fields["camera"].tolist() == gallery["camera"].tolist()
    assert fields["is_distractor"].tolist() == gallery["is_distractor"].astype(int).tolist()
    side = json.loads((out / "sysu_gallery.beton.json").read_text())
    assert side["num_samples"] == len(gallery) and side["selection"] == {"split": "gallery"}
    assert side["manifest"] == "data/validated/manifests/sysu.csv"
    assert side["convert"] == {"compress_probability": 0.5, "jpeg_quality": 90, "max_resolution": 512,
                               "write_mode": "jpg"}


def test_proportion_mode_is_deterministic_and_downscales(project, tmp_path):
    from ffcv.reader import Reader

    plan = BetonPlan("classification_train", "classification.csv", str(project / "data/embedded/imagenet"),
                     "train", ("label",))
    manifest = project / "data/validated/manifests/classification.csv"
    settings = EncodeSettings(max_resolution=20, write_mode="proportion", jpeg_quality=75, compress_probability=0.5)
    a = convert_plan(plan, manifest, tmp_path / "a", settings, num_workers=0).path
    b = convert_plan(plan, manifest, tmp_path / "b", settings, num_workers=2).path
    assert a.read_bytes() == b.read_bytes()
    meta = Reader(str(a)).metadata["f0"]
    assert set(np.unique(meta["mode"])) == {0, 1}  # both JPEG and raw samples
    assert meta["width"].max() == 20 and meta["height"].max() == 20  # 32 px images -> longest side 20


def test_missing_manifests_fail_clearly(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        _run_stage(monkeypatch, tmp_path)
    assert e.value.code == 1
    assert "data/validated/manifests: not found; run `dvc repro validate` first" in capsys.readouterr().err
    assert not (tmp_path / "data/beton").exists()


def test_a_bad_image_leaves_no_output(project, tmp_path, monkeypatch, capsys):
    work = tmp_path / "w"
    (work / "data/validated/manifests").mkdir(parents=True)
    (work / "data/embedded").symlink_to(project / "data/embedded")
    rows = pd.read_csv(project / "data/validated/manifests/classification.csv")
    rows.loc[3, "path"] = "train/missing.jpg"
    rows.to_csv(work / "data/validated/manifests/classification.csv", index=False)
    with pytest.raises(SystemExit):
        _run_stage(monkeypatch, work, "convert.num_workers=2")
    assert "data/embedded/imagenet/train/missing.jpg: cannot be decoded" in capsys.readouterr().err
    assert not (work / "data/beton").exists() and not (work / "data/beton.partial").exists()


def test_raw_pages_round_trip_exactly(tmp_path):
    """Samples packed over many pages come back bit-exact, through the layout and through ffcv's loader."""
    from ffcv.reader import Reader

    from pipeline.ffcv_io.sidecar import write_sidecar
    from pipeline.ffcv_io.writer import write_beton
    from pipeline.loaders.eval import ClassificationEvalLoader

    rng = np.random.default_rng(0)
    arrays, images = [], []
    for i in range(24):
        arrays.append(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8))  # 120 kB raw: ~17 per 2 MiB page
        path = tmp_path / f"{i}.png"
        Image.fromarray(arrays[-1]).save(path)
        images.append((str(path), path.name))
    settings = EncodeSettings(max_resolution=200, write_mode="raw", jpeg_quality=90, compress_probability=0.5)
    beton = write_beton(tmp_path / "raw.beton", images, {"label": list(range(24))}, settings).path
    reader = Reader(str(beton))
    meta, table = reader.metadata["f0"], reader.alloc_table
    data = beton.read_bytes()
    assert len(set(table["ptr"] // reader.page_size)) == 2 and reader.page_size == 1 << 21
    for i, arr in enumerate(arrays):
        assert table[i]["sample_id"] == i and table[i]["size"] == arr.nbytes
        ptr = int(meta[i]["data_ptr"])
        assert data[ptr:ptr + arr.nbytes] == arr.tobytes()
    (tmp_path / "m.csv").write_text("x\n")  # a sidecar, which every loader requires
    write_sidecar(beton, manifest=tmp_path / "m.csv", selection={}, root=str(tmp_path), settings=settings.as_dict(),
                  fields=["image", "label"], num_samples=24)
    loader = ClassificationEvalLoader(beton, image_size=200, crop_ratio=1.0, batch_size=10)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    got = torch.cat([b[0] for b in loader]) * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    expected = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    assert (got - expected).abs().max() < 1e-5
