"""Stage `generate`: write the embedded default datasets (ImageFolder, SYSU-30k, COCO) from a seed.

Once written, a dataset plays the part of the user's raw data: a re-run with the same parameters and
generator code keeps the files as they are (a stamp records what produced them) instead of silently
restoring them, so a damaged file is caught by `validate`, as it would be in a real collection. The
outputs are `persist: true` in dvc.yaml for that reason. To regenerate, delete the folder or change
`generate.*`.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import time
from pathlib import Path
from typing import Callable

from ..data import generate_classification as gen_cls
from ..data import generate_coco as gen_coco
from ..data import generate_common, generate_sysu as gen_sysu, shapes
from ._common import log, run_stage

STAMP = ".generated.json"


def _stamp(cfg: dict, seed: int, *modules) -> dict:
    code = hashlib.sha256("".join(inspect.getsource(m) for m in modules).encode()).hexdigest()
    # Round-trip through JSON so tuples and lists compare equal with what was written.
    return json.loads(json.dumps({"params": cfg, "seed": seed, "code_sha256": code}))


def generate_once(root: Path, cfg: dict, seed: int, write: Callable[[], dict], *modules) -> None:
    """Run `write` unless `root` already holds what these parameters and this code produce."""
    stamp = _stamp(cfg, seed, shapes, generate_common, *modules)
    stamp_file = root / STAMP
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        log.info("%s: already generated with these parameters, kept as is (delete it to regenerate)", root)
        return
    t0 = time.perf_counter()
    stats = write()
    stamp_file.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    log.info("%s: %s in %.1f s", root, stats, time.perf_counter() - t0)


def main() -> None:
    def body(params):
        g = params.generate
        out = Path(g.out_dir)
        c, s, k = g.classification.model_dump(), g.sysu.model_dump(), g.coco.model_dump()
        classes = gen_cls.ClassificationSpec.from_dict(c).class_names()
        generate_once(out / "imagenet", c, g.seed,
                      lambda: gen_cls.generate_classification(out / "imagenet", c, g.seed), gen_cls)
        generate_once(out / "sysu30k", s, g.seed,
                      lambda: gen_sysu.generate_sysu(out / "sysu30k", s, g.seed), gen_sysu)
        generate_once(out / "coco", k | {"classes": classes}, g.seed,
                      lambda: gen_coco.generate_coco(out / "coco", k, g.seed, classes), gen_coco)

    run_stage("generate", body)


if __name__ == "__main__":
    main()
