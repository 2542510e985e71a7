"""What a checkpoint was trained with: resuming is only allowed under the same parameters and code."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
TRAINING_CODE = ("train", "models", "losses", "loaders")


def code_digest(folders=TRAINING_CODE) -> str:
    h = hashlib.sha256()
    for folder in folders:
        for f in sorted((PACKAGE / folder).rglob("*.py")):
            h.update(f.relative_to(PACKAGE).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def run_fingerprint(params) -> str:
    """Hash of everything that determines the pretraining run (params sections + training code)."""
    sections = {k: params.model_dump(by_alias=True)[k] for k in ("seed", "model", "loss", "train", "convert")}
    sections["knn"] = params.eval.knn.model_dump()
    blob = json.dumps(sections, sort_keys=True) + code_digest()
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
