"""`python -m pipeline.data add NAME --classification DIR [--sysu DIR] [--coco DIR]`: your data as a config group.

It inspects the folders (splits, classes, counts, image sizes and modes), refuses what cannot work (one class,
no val split, a class below validation's minimum, fewer training images than one batch), writes
`conf/data/NAME.yaml` with what it found, stages it with git (so that `dvc exp run` records it in the
experiment commit: DVC leaves untracked files out) and prints the command that uses it. docs/own-data.md.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from PIL import Image

from .errors import DatasetLayoutError
from .readers_coco import read_coco
from .readers_imagefolder import class_set, read_imagefolder
from .readers_sysu import read_sysu

# What a group not given a SYSU-30k / COCO set points at: nothing (the stages record `skipped`), or with
# --embedded-evals the embedded sets (which then measure how the backbone transfers to them).
EMBEDDED = {"sysu": "data/embedded/sysu30k", "coco": "data/embedded/coco"}
SAMPLE_PER_CLASS = 20  # images opened per class for the size and mode summary (headers only)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class AddError(ValueError):
    """The folders cannot make a working data group; the message names the folder or value and the fix."""


@dataclass
class Inspection:
    """What `inspect_classification` found in an ImageFolder root."""

    root: Path
    train_split: str
    val_split: str
    classes: list[str]
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    sizes: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))  # smallest (w, h), largest (w, h)
    modes: Counter = field(default_factory=Counter)

    @property
    def train_images(self) -> int:
        return sum(self.train_counts.values())

    @property
    def val_images(self) -> int:
        return sum(self.val_counts.values())


def inspect_classification(root: Path, train_split: str = "train", val_split: str = "val", *,
                           batch_size: int = 128, min_train: int = 10, min_val: int = 2) -> Inspection:
    """Read an ImageFolder root and refuse (AddError) what the pipeline cannot train and evaluate on."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise AddError(f"{root}: not a folder; expected an ImageFolder root '<root>/{train_split}/<class>/<image>'")
    splits = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    for split, flag in ((train_split, "--train-split"), (val_split, "--val-split")):
        if split not in splits:
            raise AddError(f"{root}: no {split!r} split folder (found: {', '.join(splits) or 'none'}); expected "
                           f"'{split}/<class>/<image>', or name yours with {flag}")
    try:
        classes = class_set(root, train_split)
        train = read_imagefolder(root, train_split, classes)
        val = read_imagefolder(root, val_split, classes)
    except DatasetLayoutError as e:
        raise AddError(str(e)) from None
    if len(classes) < 2:
        raise AddError(f"{root / train_split}: {len(classes)} class folder ({', '.join(classes)}); the linear and kNN "
                       "evaluations need at least 2 classes")
    strays = sorted(set(val.folders) - set(classes))
    if strays:
        raise AddError(f"{root / val_split}: class folder(s) {', '.join(strays[:5])} not in {train_split}/; every "
                       "val class must have training images")
    train_counts = Counter(im.class_name for im in train.images)
    val_counts = Counter(im.class_name for im in val.images)
    few = sorted(c for c in classes if train_counts[c] < min_train)
    if few:
        raise AddError(f"{root / train_split}: class(es) {', '.join(few[:5])} have fewer than {min_train} training "
                       f"images ({', '.join(str(train_counts[c]) for c in few[:5])}); validation refuses them "
                       "(validate.min_images_per_class.train): add images or leave those classes out")
    if not val.images:
        raise AddError(f"{root / val_split}: no images; the evaluations score on the val split")
    if len(train.images) < batch_size:
        raise AddError(f"{root / train_split}: {len(train.images)} training images, fewer than one batch of "
                       f"train.batch_size = {batch_size}; pretraining drops incomplete batches (add images or use a "
                       "smaller -S train.batch_size)")
    sizes, modes = [], Counter()
    by_class: dict[str, list[Path]] = {}
    for im in train.images + val.images:
        by_class.setdefault(im.class_name, []).append(im.path)
    for paths in by_class.values():
        for path in paths[:SAMPLE_PER_CLASS]:
            try:
                with Image.open(path) as f:  # the header only: validate decodes every image
                    sizes.append(f.size)
                    modes[f.mode] += 1
            except OSError:
                modes["unreadable"] += 1
    area = sorted(sizes, key=lambda s: s[0] * s[1])
    return Inspection(root, train_split, val_split, classes, {c: train_counts[c] for c in classes},
                      {c: val_counts[c] for c in classes}, (area[0], area[-1]) if area else ((0, 0), (0, 0)), modes)


def inspect_sysu(root: Path) -> str:
    root = Path(root).expanduser().resolve()
    try:
        images = read_sysu(root)
    except (DatasetLayoutError, OSError) as e:
        raise AddError(f"--sysu {root}: {e}") from None
    counts = Counter(im.split for im in images)
    if not counts.get("query") or not counts.get("gallery"):
        raise AddError(f"--sysu {root}: {counts.get('query', 0)} query and {counts.get('gallery', 0)} gallery images; "
                       "retrieval needs both")
    return f"{counts.get('train', 0)} train, {counts['query']} query, {counts['gallery']} gallery images"


def inspect_coco(root: Path, train_split: str = "train2017", val_split: str = "val2017") -> str:
    root = Path(root).expanduser().resolve()
    found = []
    for split in (train_split, val_split):
        try:
            data = read_coco(root, split)
        except (DatasetLayoutError, OSError) as e:
            raise AddError(f"--coco {root}: {e}") from None
        found.append(f"{split}: {len(data.coco.imgs)} images, {len(data.coco.anns)} annotations")
    return "; ".join(found)


def render_group(name: str, ins: Inspection, sysu: Path | str, coco: Path | str, notes: list[str]) -> str:
    """The conf/data/NAME.yaml text: the roots, the class count, and what was found, as comments."""
    (w0, h0), (w1, h1) = ins.sizes
    smallest = min(ins.train_counts.values())
    lines = [f"# Written by `python -m pipeline.data add {name}` on {date.today().isoformat()}. Use it with",
             f"# `dvc exp run -S data={name}` (docs/own-data.md).",
             f"# {ins.root}: {len(ins.classes)} classes; {ins.train_images} train images (smallest class {smallest}),"
             f" {ins.val_images} val images;",
             f"# image sizes {w0}x{h0} to {w1}x{h1} (a sample of up to {SAMPLE_PER_CLASS} per class), modes "
             + ", ".join(f"{m} {n}" for m, n in sorted(ins.modes.items())) + ".",
             *[f"# {n}" for n in notes],
             f"name: {name}",
             f"num_classes: {len(ins.classes)}  # the class folders of {ins.train_split}/ (used by loss.k: auto)",
             "classification:",
             f"  root: {ins.root}",
             f"  train_split: {ins.train_split}",
             f"  val_split: {ins.val_split}",
             "sysu:",
             f"  root: {sysu}",
             "coco:",
             f"  root: {coco}",
             "  train_split: train2017",
             "  val_split: val2017",
             ""]
    return "\n".join(lines)


def add(name: str, classification: Path, sysu: Path | None = None, coco: Path | None = None, *,
        conf_dir: Path, train_split: str = "train", val_split: str = "val", batch_size: int = 128,
        force: bool = False, git_add: bool = True, embedded_evals: bool = False, echo=print) -> Path:
    """Inspect, refuse or write conf_dir/data/NAME.yaml; returns its path."""
    if not _NAME.match(name):
        raise AddError(f"name {name!r}: letters, digits, '_' and '-' only, starting with a letter")
    target = Path(conf_dir) / "data" / f"{name}.yaml"
    if target.exists() and not force:
        raise AddError(f"{target}: already exists; pick another name or pass --force to rewrite it")
    ins = inspect_classification(classification, train_split, val_split, batch_size=batch_size)
    from ..config import ABSENT_ROOT

    notes = []
    if sysu:
        notes.append(f"SYSU-30k {Path(sysu).resolve()}: {inspect_sysu(sysu)}")
        sysu = Path(sysu).expanduser().resolve()
    elif embedded_evals:
        sysu = EMBEDDED["sysu"]
        notes.append("SYSU-30k not given: retrieval runs on the embedded set (how your backbone transfers to it)")
    else:
        sysu = ABSENT_ROOT
        notes.append("SYSU-30k not given: off (reid_eval records status skipped)")
    if coco:
        notes.append(f"COCO {Path(coco).resolve()}: {inspect_coco(coco)}")
        coco = Path(coco).expanduser().resolve()
    elif embedded_evals:
        coco = EMBEDDED["coco"]
        notes.append("COCO not given: detection runs on the embedded set (how your backbone transfers to it)")
    else:
        coco = ABSENT_ROOT
        notes.append("COCO not given: off (coco_finetune records status skipped)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(render_group(name, ins, sysu, coco, notes))
    tmp.replace(target)
    steps = ins.train_images // batch_size
    echo(f"{target}: {len(ins.classes)} classes, {ins.train_images} train / {ins.val_images} val images")
    for n in notes:
        echo(f"  {n}")
    echo(f"  at train.batch_size {batch_size}: {steps} steps per epoch (the embedded default trains 585 steps: "
         f"15 epochs of 39); `-S train.epochs={max(1, round(585 / max(steps, 1)))}` gives about the same budget")
    if git_add:
        staged = subprocess.run(["git", "add", "--", str(target)], cwd=target.parent, capture_output=True, text=True)
        echo(f"  staged with git add (dvc exp run records staged files in the experiment commit)" if staged.returncode
             == 0 else f"  not staged ({staged.stderr.strip() or 'not a git repository'}): git add it yourself")
    echo(f"next: dvc exp run -S data={name}   (every experiment on it repeats -S data={name}; or make it the "
         f"default: python -m pipeline.data use {name})")
    return target


_DEFAULT_DATA = re.compile(r"(?m)^(\s*-\s*data:\s*)(\S+)(.*)$")


def use(name: str, conf_dir: Path, *, git_add: bool = True, echo=print) -> Path:
    """Make data group NAME the default in conf_dir/config.yaml, so that every later `dvc exp run` (and
    `dvc repro`, through the recomposed params.yaml) trains on it without repeating `-S data=NAME`."""
    conf_dir = Path(conf_dir)
    if not (conf_dir / "data" / f"{name}.yaml").is_file():
        known = sorted(p.stem for p in (conf_dir / "data").glob("*.yaml"))
        raise AddError(f"data group {name!r}: no {conf_dir / 'data' / (name + '.yaml')} (known: {', '.join(known)}); "
                       f"write it first with `python -m pipeline.data add {name} --classification DIR`")
    config = conf_dir / "config.yaml"
    text = config.read_text()
    found = _DEFAULT_DATA.search(text)
    if found is None:
        raise AddError(f"{config}: no `- data: ...` line in its defaults list to point at {name}")
    previous = found.group(2)
    tmp = config.with_suffix(".yaml.tmp")
    tmp.write_text(text[:found.start(2)] + name + text[found.end(2):])
    tmp.replace(config)
    echo(f"{config}: defaults now use data={name} (was {previous})")
    from ..config import CONF_DIR, PARAMS_FILE, write_composed

    staged = [config]
    if conf_dir.resolve() == CONF_DIR.resolve():
        write_composed()  # params.yaml follows conf/, for plain `dvc repro` too
        echo(f"  params.yaml recomposed from conf/")
        staged.append(PARAMS_FILE)
    if git_add:
        for path in staged:
            _stage(path)
    return config


def _stage(path: Path) -> None:
    staged = subprocess.run(["git", "add", "--", str(path)], cwd=path.parent, capture_output=True, text=True)
    if staged.returncode != 0:
        print(f"  {path}: not staged ({staged.stderr.strip() or 'not a git repository'}): git add it yourself")


def main(argv: list[str] | None = None) -> int:
    from ..config import CONF_DIR

    ap = argparse.ArgumentParser(prog="python -m pipeline.data", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="inspect your folders and write conf/data/NAME.yaml")
    a.add_argument("name")
    a.add_argument("--classification", required=True, type=Path, help="ImageFolder root: <root>/{train,val}/<class>/")
    a.add_argument("--sysu", type=Path, help="SYSU-30k root (default: none, retrieval is skipped)")
    a.add_argument("--coco", type=Path, help="COCO 2017 root (default: none, detection is skipped)")
    a.add_argument("--embedded-evals", action="store_true",
                   help="evaluate on the embedded SYSU-30k / COCO sets where none is given (transfer)")
    a.add_argument("--train-split", default="train")
    a.add_argument("--val-split", default="val")
    a.add_argument("--batch-size", type=int, default=128, help="train.batch_size you will train with (default 128)")
    a.add_argument("--force", action="store_true", help="rewrite an existing conf/data/NAME.yaml")
    a.add_argument("--use", action="store_true", help="also make it the default data group (see `use`)")
    a.add_argument("--conf-dir", type=Path, default=CONF_DIR, help=argparse.SUPPRESS)
    u = sub.add_parser("use", help="make data group NAME the default of conf/config.yaml (every experiment uses it)")
    u.add_argument("name")
    u.add_argument("--conf-dir", type=Path, default=CONF_DIR, help=argparse.SUPPRESS)
    r = sub.add_parser("restore", help="set damaged generated datasets aside so that `dvc repro` regenerates them")
    r.add_argument("--all", action="store_true", help="set every generated dataset aside, damaged or not")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "use":
            use(args.name, args.conf_dir)
            return 0
        if args.cmd == "restore":
            from ..config import load_params
            from .restore import restore

            restore(Path(load_params().generate.out_dir), every=args.all)
            return 0
        add(args.name, args.classification, args.sysu, args.coco, conf_dir=args.conf_dir,
            train_split=args.train_split, val_split=args.val_split, batch_size=args.batch_size, force=args.force,
            embedded_evals=args.embedded_evals)
        if args.use:
            use(args.name, args.conf_dir)
    except AddError as e:
        print(f"data add: error: {e}", file=sys.stderr)
        return 1
    return 0
