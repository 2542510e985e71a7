"""A tiny generated ImageFolder set, its manifest and .beton files, shared by the loader tests (built once)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.data.generate_classification import generate_classification
from pipeline.data.manifest import classification_tables
from pipeline.ffcv_io.datasets import BetonPlan, convert_plan
from pipeline.ffcv_io.encode import EncodeSettings

SMALL = {"classes": 4, "image_size": 32, "train_per_class": 8, "val_per_class": 4, "palette_size": 8,
         "scale": [0.5, 0.85], "max_distractors": 2, "jpeg_quality": 90}
SETTINGS = EncodeSettings(max_resolution=64, write_mode="jpg", jpeg_quality=90, compress_probability=0.5)


class Tiny:
    settings = SETTINGS  # what the .beton files were written with

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "imagenet"
        generate_classification(self.root, SMALL, seed=0)
        self.manifests = base / "manifests"
        self.manifests.mkdir()
        self.manifest = self.manifests / "classification.csv"
        classification_tables(self.root, ("train", "val"))["classification"].to_csv(self.manifest, index=False)
        self.betons = base / "beton"
        self.train = self.convert("classification_train", "train")
        self.val = self.convert("classification_val", "val")
        self.sysu_root, self.sysu_manifest = self._sysu()
        self.query = convert_plan(BetonPlan("sysu_query", "sysu.csv", str(self.sysu_root), "query",
                                            ("label", "camera", "is_distractor")),
                                  self.sysu_manifest, self.betons, SETTINGS, 0).path

    def convert(self, name: str, split: str, settings: EncodeSettings = SETTINGS, out: Path | None = None) -> Path:
        plan = BetonPlan(name, "classification.csv", str(self.root), split, ("label",))
        return convert_plan(plan, self.manifest, out or self.betons, settings, 0).path

    def _sysu(self) -> tuple[Path, Path]:
        """Six portrait-shaped 'query' images (48 x 24) with identities, cameras and a distractor flag."""
        root = self.base / "sysu"
        rows, rng = [], np.random.default_rng(0)
        for i in range(6):
            rel = f"sysu_test_set_all/query/{i + 1:04d}/{i + 1:04d}_c2_{i}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (48, 24, 3), dtype=np.uint8)).save(root / rel, quality=95)
            rows.append({"path": rel, "split": "query", "identity": f"{i + 1:04d}", "label": i + 1, "camera": 2,
                         "is_distractor": i == 5})
        manifest = self.manifests / "sysu.csv"
        pd.DataFrame(rows).to_csv(manifest, index=False)
        return root, manifest


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Tiny:
    return Tiny(tmp_path_factory.mktemp("tiny"))
