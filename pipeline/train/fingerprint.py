"""What a checkpoint was trained with: resuming is only allowed under the same parameters, data and code.

The checkpoint is a working file that DVC never deletes, so this fingerprint is the only guard against
resuming (or, for a finished run, silently re-exporting) a run made with other settings: it must cover
everything the pretrain stage depends on.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

PACKAGE = Path(__file__).resolve().parent.parent
TRAINING_CODE = ("train", "models", "methods", "losses", "loaders")
# Also code of the pretrain stage: its monitor (kNN, linear probe) and the entry point.
TRAINING_FILES = ("evaluation/knn.py", "evaluation/linear.py", "evaluation/monitor.py", "stages/pretrain.py")


def code_digest(folders=TRAINING_CODE, files=TRAINING_FILES) -> str:
    h = hashlib.sha256()
    paths = [f for folder in folders for f in sorted((PACKAGE / folder).rglob("*.py"))]
    for f in paths + [PACKAGE / name for name in files]:
        h.update(f.relative_to(PACKAGE).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def run_fingerprint(params, data_files: Iterable[Path] = ()) -> str:
    """Hash of everything that determines the pretraining run: params sections, data and training code.

    data_files: the .beton sidecars of the loaders (they record the manifest's sha256, the split, the root
    and the convert settings), so that other images under the same parameters are another run.
    """
    dump = params.model_dump(by_alias=True)
    sections = {k: dump[k] for k in ("seed", "model", "method", "loss", "train", "convert")}
    sections["knn"], sections["linear"] = dump["eval"]["knn"], dump["eval"]["linear"]
    data = {Path(f).name: hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in data_files if Path(f).is_file()}
    blob = json.dumps({"params": sections, "data": data}, sort_keys=True) + code_digest()
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
