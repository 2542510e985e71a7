"""Stage `generate`: write the embedded default datasets (ImageFolder, SYSU-30k, COCO) from a seed.

Once written, a dataset plays the part of the user's raw data: a re-run with the same parameters and
generator code keeps the files as they are (a stamp records what produced them, file by file) instead of
silently restoring them, and names the files that changed, so a damaged file is caught by `validate`, as
it would be in a real collection. The outputs are `persist: true` and `cache: false` in dvc.yaml for that
reason (docs/data-safety.md). To regenerate, delete the folder or change `generate.*`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import time
from pathlib import Path
from typing import Callable

from ..data import generate_classification as gen_cls
from ..data import generate_coco as gen_coco
from ..data import generate_common, generate_sysu as gen_sysu, look, shapes
from ..data.stamps import STAMP, differences, file_digests
from ._common import log, run_stage

def _stamp(cfg: dict, seed: int, *modules) -> dict:
    code = hashlib.sha256("".join(inspect.getsource(m) for m in modules).encode()).hexdigest()
    # Round-trip through JSON so tuples and lists compare equal with what was written.
    return json.loads(json.dumps({"params": cfg, "seed": seed, "code_sha256": code}))


def generate_once(root: Path, cfg: dict, seed: int, write: Callable[[], dict], *modules) -> None:
    """Run `write` unless `root` already holds what these parameters and this code produce.

    A folder written earlier is kept as it is, even where its files changed since (the user's data is
    never rewritten): the changes are named here, and `validate` checks the files.
    """
    stamp = _stamp(cfg, seed, shapes, generate_common, *modules)
    stamp_file = root / STAMP
    recorded = json.loads(stamp_file.read_text()) if stamp_file.is_file() else None
    if recorded is not None and {k: v for k, v in recorded.items() if k != "files"} == stamp:
        # Stamps written before the file list was recorded cannot tell: nothing is compared then.
        changed = differences(recorded["files"], file_digests(root)) if "files" in recorded else {}
        if changed:
            listing = "; ".join(f"{kind} {len(files)}: {', '.join(files[:5])}{' ...' if len(files) > 5 else ''}"
                                for kind, files in changed.items())
            log.warning("%s: kept as is; it differs from what generate wrote (%s). validate checks these "
                        "files; delete the folder to regenerate it", root, listing)
        else:
            log.info("%s: already generated with these parameters, kept as is (delete it to regenerate)", root)
        return
    t0 = time.perf_counter()
    stats = write()
    stamp["files"] = file_digests(root)
    stamp_file.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    log.info("%s: %s in %.1f s", root, stats, time.perf_counter() - t0)


def _look_stamp(drawn_in, emblems: tuple[str, ...] = ()) -> dict:
    """What a dataset drawn in the classification look also depends on (nothing in its native look)."""
    if drawn_in is None:
        return {}
    return {"classification_look": dataclasses.asdict(drawn_in), **({"emblems": list(emblems)} if emblems else {})}


def used_sets(params) -> dict[str, bool]:
    """Which generated sets (folder name under generate.out_dir -> used) the data group reads: a group that brings
    its own data (python -m pipeline.data add) generates nothing it does not use."""
    out, d = Path(params.generate.out_dir), params.data
    return {"imagenet": Path(d.classification.root) == out / "imagenet",
            "sysu30k": Path(d.sysu.root) == out / "sysu30k",
            "coco": Path(d.coco.root) == out / "coco"}


def main() -> None:
    def body(params):
        g = params.generate
        out = Path(g.out_dir)
        c, s, k = g.classification.model_dump(), g.sysu.model_dump(), g.coco.model_dump()
        classes = gen_cls.ClassificationSpec.from_dict(c).shape_names()  # the vocabulary COCO and SYSU-30k share
        wanted = used_sets(params)
        if wanted["imagenet"]:
            generate_once(out / "imagenet", c, g.seed,
                          lambda: gen_cls.generate_classification(out / "imagenet", c, g.seed), gen_cls)
        # In the classification look the other sets take the classification set's keys and classes: stamped too.
        sysu_look, coco_look = (look.look_for(d["look"], c) for d in (s, k))
        emblems = tuple(classes) if sysu_look else ()
        if wanted["sysu30k"]:
            generate_once(out / "sysu30k", s | _look_stamp(sysu_look, emblems), g.seed,
                          lambda: gen_sysu.generate_sysu(out / "sysu30k", s, g.seed, sysu_look, emblems), gen_sysu,
                          look)
        if wanted["coco"]:
            generate_once(out / "coco", k | {"classes": classes} | _look_stamp(coco_look), g.seed,
                          lambda: gen_coco.generate_coco(out / "coco", k, g.seed, classes, coco_look), gen_coco, look)
        for name in (n for n, used in wanted.items() if not used):
            # DVC needs the declared output folder; an empty one holds nothing that could pass for data.
            (out / name).mkdir(parents=True, exist_ok=True)
            log.info("%s: not generated: the data group '%s' reads that dataset from elsewhere", out / name,
                     params.data.name)

    run_stage("generate", body)


if __name__ == "__main__":
    main()
