"""The one shared params file: a typed schema, loading with clear errors, and composition from conf/.

Every stage calls `load_params()` first, so a bad value stops it before any compute. Stages read
params.yaml (never re-compose with @hydra.main): `dvc exp run -S ...` writes its overrides there.

    python -m pipeline.config compose   # rewrite params.yaml from conf/ (what DVC's Hydra step does)
    python -m pipeline.config check     # validate params.yaml and print the first error, if any
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .methods.catalog import METHOD_LOSSES, TAKES_LOCAL_VIEWS

REPO = Path(__file__).resolve().parent.parent
PARAMS_FILE = REPO / "params.yaml"
CONF_DIR = REPO / "conf"

PositiveInt = Field(ge=1)


class Strict(BaseModel):
    # Unknown keys are errors: a typo like `loss.kk=3` must not be silently ignored. Every float must be
    # finite: `train.lr=inf` (YAML `.inf`, `.nan`, the string 'inf') would otherwise pass a `gt=0` bound
    # and fail only after minutes of compute.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


# --- generate: the embedded default dataset -------------------------------------------------------
class GenClassification(Strict):
    classes: int = Field(ge=2, le=144)  # beyond 12: shape x pattern x layout (generate_classification)
    image_size: int = Field(ge=16, le=512)
    train_per_class: int = PositiveInt
    val_per_class: int = PositiveInt
    palette_size: int = Field(ge=2, le=12)
    colour_jitter: float = Field(ge=0, le=64)
    scale: tuple[float, float]
    max_distractors: int = Field(ge=0, le=10)
    background_contrast: tuple[float, float]
    object_texture: float = Field(ge=0, le=1)
    rotation: float = Field(ge=0, le=180)
    jpeg_quality: int = Field(ge=1, le=100)

    @model_validator(mode="after")
    def _ranges(self):
        for key in ("scale", "background_contrast"):
            lo, hi = getattr(self, key)
            if not 0 <= lo <= hi <= 1 or (key == "scale" and lo == 0):
                raise ValueError(f"generate.classification.{key} = {list(getattr(self, key))}: expected"
                                 " 0 < low <= high <= 1")
        return self


class GenSysu(Strict):
    query_ids: int = PositiveInt
    distractors: int = Field(ge=0)
    train_bags: int = PositiveInt
    images_per_bag: int = PositiveInt
    identities_per_bag: int = PositiveInt
    height: int = Field(ge=32, le=1024)
    width: int = Field(ge=16, le=1024)
    jpeg_quality: int = Field(ge=1, le=100)
    look: Literal["native", "classification"]  # pipeline/data/look.py


class GenCoco(Strict):
    train_images: int = PositiveInt
    val_images: int = PositiveInt
    min_size: int = Field(ge=32, le=2048)
    max_size: int = Field(ge=32, le=2048)
    max_objects: int = Field(ge=1, le=20)
    jpeg_quality: int = Field(ge=1, le=100)
    look: Literal["native", "classification"]  # pipeline/data/look.py

    @model_validator(mode="after")
    def _sizes(self):
        if self.min_size > self.max_size:
            raise ValueError(f"generate.coco.min_size = {self.min_size} > generate.coco.max_size = {self.max_size}")
        return self


class Generate(Strict):
    out_dir: str
    seed: int
    classification: GenClassification
    sysu: GenSysu
    coco: GenCoco


# --- data: where the datasets live ----------------------------------------------------------------
class DataClassification(Strict):
    root: str
    train_split: str
    val_split: str


# A data group that has no SYSU-30k or COCO set points the root here (a committed, empty folder, since DVC needs
# an existing path to depend on): the stages that need that set record `skipped` instead of measuring anything.
ABSENT_ROOT = "data/absent"


class _OptionalSet(Strict):
    root: str

    @property
    def provided(self) -> bool:
        return Path(self.root).resolve() != Path(ABSENT_ROOT).resolve()


class DataSysu(_OptionalSet):
    pass


class DataCoco(_OptionalSet):
    train_split: str
    val_split: str


class Data(Strict):
    name: str
    # Classes in the training images, known or estimated (null: unknown); loss.k: auto needs it.
    num_classes: int | None = Field(default=..., ge=2)
    classification: DataClassification
    sysu: DataSysu
    coco: DataCoco

    @model_validator(mode="after")
    def _classification_given(self):
        if Path(self.classification.root).resolve() == Path(ABSENT_ROOT).resolve():
            raise ValueError(f"data.classification.root = {self.classification.root}: every data group needs a "
                             "classification set (pretraining and the linear evaluation train on it)")
        return self

    def skipped_reason(self, dataset: str) -> str | None:
        """Why the stages of `dataset` (sysu | coco) skip, or None when the data group provides it."""
        if getattr(self, dataset).provided:
            return None
        return (f"data.{dataset}.root = {ABSENT_ROOT}: the data group '{self.name}' provides no "
                f"{'SYSU-30k' if dataset == 'sysu' else 'COCO'} set")


class Validate(Strict):
    on_error: Literal["fail", "quarantine"]
    datasets: list[Literal["classification", "sysu", "coco"]] = Field(min_length=1)
    min_side: int = PositiveInt
    max_side: int = PositiveInt
    allowed_modes: list[str] = Field(min_length=1)
    min_images_per_class: dict[Literal["train", "val"], int]
    # Symlinks resolving outside the dataset root: refused (default) or followed. `..` out of it: always refused.
    follow_external_symlinks: bool = False

    @model_validator(mode="after")
    def _sides(self):
        if self.min_side > self.max_side:
            raise ValueError(f"validate.min_side = {self.min_side} > validate.max_side = {self.max_side}")
        return self


# --- convert: FFCV .beton files and the loaders that read them --------------------------------------
class ConvertLoader(Strict):
    order: Literal["random", "quasi_random"]
    os_cache: bool
    batches_ahead: int = Field(ge=1, le=16)
    crop_scale: tuple[float, float]
    local_crop_scale: tuple[float, float]  # multi-crop's small views (train.local_views)
    eval_crop_ratio: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _scale(self):
        for key in ("crop_scale", "local_crop_scale"):
            lo, hi = getattr(self, key)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"convert.loader.{key} = {list(getattr(self, key))}: expected 0 < low <= high <= 1")
        return self


class Convert(Strict):
    max_resolution: int = Field(ge=16, le=4096)
    write_mode: Literal["jpg", "raw", "proportion"]
    jpeg_quality: int = Field(ge=1, le=100)
    compress_probability: float = Field(ge=0, le=1)
    num_workers: int = Field(ge=0)
    loader: ConvertLoader


# --- model, loss, train, eval ---------------------------------------------------------------------
class Model(Strict):
    arch: Literal["resnet18", "resnet34", "resnet50", "resnet101"]
    stem: Literal["imagenet", "small"]
    projector_hidden: int = PositiveInt
    projector_out: int = PositiveInt
    predictor_hidden: int = PositiveInt
    sync_bn: bool


# The `loss` section holds the active loss's keys only (conf/loss/<group>.yaml): `name` says which schema applies,
# and a key of another loss is an error naming the loss and the keys it takes.
def _rank_or_auto(value):
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        # A custom type, not value_error: the message then gets the key and value (see _describe).
        raise PydanticCustomError("rank", "expected a rank >= 1 (1 = the hardest negative) or 'auto'")
    return value


RankOrAuto = Annotated[Union[int, str], PlainValidator(_rank_or_auto)]


class TripletLoss(Strict):
    """conf/loss/{truncated_triplet,median,rank,hardest}.yaml (method triplet)."""
    name: Literal["truncated_triplet"]
    variant: Literal["smoothed", "rank", "median", "hardest"]
    # auto: from the expected same-class negatives per query, (pool - 1) / data.num_classes (docs/methods.md)
    k: RankOrAuto
    k_end: RankOrAuto
    gamma: float = Field(gt=0)
    margin: float = Field(ge=0)
    gather_negatives: bool

    @model_validator(mode="after")
    def _ranks(self):
        if "auto" not in (self.k, self.k_end) and self.k > self.k_end:
            raise ValueError(f"loss.k = {self.k} > loss.k_end = {self.k_end}: the deputy ranks k..k_end must be"
                             " a non-empty range (1 <= k <= k_end)")
        return self

    @property
    def auto(self) -> bool:
        return "auto" in (self.k, self.k_end)

    def ranks(self, pool: int, classes: int | None) -> tuple[int, int]:
        """(k, k_end) for a pool of `pool` images: `auto` resolved (pipeline.losses.truncated_triplet.auto_ranks)."""
        from .losses.truncated_triplet import auto_ranks

        auto = auto_ranks(pool, classes) if self.auto else (0, 0)
        k = auto[0] if self.k == "auto" else self.k
        # k: auto moves the window: a k_end below the resolved k (the default 10 with 10 classes) is replaced
        # by the automatic one, which keeps the paper's nine ranks.
        k_end = self.k_end if self.k_end != "auto" and self.k_end >= k else max(auto[1], k)
        return k, k_end

    def negatives_needed(self) -> int:
        """Negatives per row the loss needs: rank k_end for smoothed, k for rank, one otherwise (auto ranks fit
        in any pool)."""
        need = {"smoothed": self.k_end, "rank": self.k}.get(self.variant, 1)
        return 1 if need == "auto" else need

    def describe(self) -> str:
        return f"'{self.name}' (variant '{self.variant}', k = {self.k}, k_end = {self.k_end})"


class TemperatureLoss(Strict):
    """conf/loss/{infonce,nt_xent}.yaml (methods infonce, simclr)."""
    name: Literal["infonce", "nt_xent"]
    temperature: float = Field(gt=0)

    def negatives_needed(self) -> int:
        return 1

    def describe(self) -> str:
        return f"'{self.name}' (temperature {self.temperature})"


class PlainLoss(Strict):
    """conf/loss/{byol,negative_cosine}.yaml (methods byol, simsiam): no hyperparameters."""
    name: Literal["byol", "negative_cosine"]

    def negatives_needed(self) -> int:
        return 1

    def describe(self) -> str:
        return f"'{self.name}'"


class CodingRateLoss(Strict):
    """conf/loss/coding_rate.yaml (method emp_ssl): the patches it trains and evaluates on, and the loss."""
    name: Literal["coding_rate"]
    patches: int = Field(ge=2, le=256)
    patch_scale: float = Field(gt=0, le=1)
    eval_patches: int = Field(ge=1, le=256)
    eps: float = Field(gt=0)
    invariance_weight: float = Field(ge=0)

    def negatives_needed(self) -> int:
        return 1  # the coding rate of a batch of one is constant: at least two images

    def describe(self) -> str:
        return f"'{self.name}' ({self.patches} patches)"


class SwAVLoss(Strict):
    """conf/loss/swav.yaml (method proto): the prototypes and SwAV's swapped prediction."""
    name: Literal["swav"]
    prototypes: int = Field(ge=2)
    temperature: float = Field(gt=0)
    sinkhorn_eps: float = Field(gt=0)
    sinkhorn_iterations: int = PositiveInt

    def negatives_needed(self) -> int:
        return 1

    def describe(self) -> str:
        return f"'{self.name}' ({self.prototypes} prototypes)"


LOSS_SCHEMAS = (TripletLoss, TemperatureLoss, PlainLoss, CodingRateLoss, SwAVLoss)
Loss = Annotated[Union[LOSS_SCHEMAS], Field(discriminator="name")]
LOSS_KEYS = {name: tuple(cls.model_fields) for cls in LOSS_SCHEMAS for name in cls.model_fields["name"].annotation.__args__}


class Train(Strict):
    epochs: int = PositiveInt
    # A budget in optimizer steps replaces `epochs` when set (epochs derived; pipeline/train/schedule.py Budget).
    steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(ge=2)
    accumulate: int = PositiveInt
    image_size: int = Field(ge=16, le=1024)
    local_views: int = Field(ge=0, le=16)  # multi-crop: small views per image next to the two (0: none)
    local_image_size: int = Field(ge=8, le=1024)
    optimizer: Literal["lars", "sgd", "adamw"]
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    momentum: float = Field(ge=0, lt=1)
    warmup_epochs: float = Field(ge=0)
    warmup_steps: int | None = Field(default=None, ge=0)  # replaces warmup_epochs when set
    base_ema: float = Field(ge=0, le=1)
    precision: Literal["fp32", "bf16", "fp16"]
    channels_last: bool
    random_resolution: bool
    num_workers: int = Field(ge=0)
    checkpoint_every: int = PositiveInt
    monitor_every: int = PositiveInt  # epochs between kNN/linear monitor passes (the last epoch always has one)
    device: Literal["auto", "cpu", "cuda"]


class Knn(Strict):
    k: int = PositiveInt
    temperature: float = Field(gt=0)


class Linear(Strict):
    epochs: int = PositiveInt
    lr: float = Field(gt=0)
    batch_size: int = PositiveInt
    fast_features: bool


class Reid(Strict):
    height: int = PositiveInt
    width: int = PositiveInt
    batch_size: int = PositiveInt
    adapt_epochs: int = Field(ge=0)
    # Self-supervised adaptation on the SYSU-30k training images (used only when adapt_epochs > 0).
    adapt_batch_size: int = Field(ge=2)
    adapt_height: int = Field(ge=16, le=1024)
    adapt_width: int = Field(ge=16, le=1024)
    adapt_lr: float | None = Field(default=..., gt=0)  # null: train.lr (the paper adapts at its pretraining lr)
    adapt_warmup_epochs: float = Field(ge=0)

    @model_validator(mode="after")
    def _adapt_warmup(self):
        if self.adapt_epochs > 0 and self.adapt_warmup_epochs > self.adapt_epochs:
            raise ValueError(f"eval.reid.adapt_warmup_epochs = {self.adapt_warmup_epochs} > eval.reid.adapt_epochs"
                             f" = {self.adapt_epochs}: the warm-up must fit in the adaptation")
        return self


class Coco(Strict):
    schedule: Literal["short", "1x", "2x"]
    iterations: int = PositiveInt
    batch_size: int = PositiveInt
    lr: float = Field(gt=0)
    train_sizes: list[int] = Field(min_length=1)
    test_size: int = PositiveInt
    fpn_channels: int = Field(ge=8)
    num_workers: int = Field(ge=0)
    # Fine-tuning seed (new layers' init, data order, sizes, flips); null: the top-level seed. The random-init
    # backbone stays the pretrain stage's starting weights (top-level seed) whatever this is.
    seed: int | None = Field(default=..., ge=0)
    # Iterations of the frozen-backbone probe (FPN and heads only) run next to full fine-tuning; 0: no probe.
    probe_iterations: int = Field(ge=0)

    @model_validator(mode="after")
    def _sizes(self):
        bad = [s for s in self.train_sizes if not 32 <= s <= 2048]
        if bad or not 32 <= self.test_size <= 2048:
            raise ValueError(f"eval.coco.train_sizes = {list(self.train_sizes)}, eval.coco.test_size ="
                             f" {self.test_size}: every shorter-side size must be in 32..2048 px")
        return self


class Eval(Strict):
    seeds: int = Field(ge=1, le=20)  # runs of each evaluation that trains something (linear head, COCO, SYSU adaptation)
    knn: Knn
    linear: Linear
    reid: Reid
    coco: Coco


class Params(Strict):
    seed: int
    generate: Generate
    data: Data
    validate_: Validate = Field(alias="validate")  # `validate` would shadow a BaseModel method
    convert: Convert
    model: Model
    loss: Loss
    method: Literal[tuple(METHOD_LOSSES)]  # conf/method/, docs/methods.md
    train: Train
    eval: Eval

    @model_validator(mode="before")
    @classmethod
    def _method_takes_its_loss(cls, raw):
        # Before the fields: a loss section that is not the method's would otherwise be reported as every
        # key of the other loss, not as its cause.
        mismatch = _method_loss_mismatch(raw) if isinstance(raw, dict) else None
        if mismatch:
            raise ValueError(mismatch)
        return raw

    @model_validator(mode="after")
    def _multi_crop_is_for_siamese_methods(self):
        if self.train.local_views and self.method not in TAKES_LOCAL_VIEWS:
            raise ValueError(f"train.local_views = {self.train.local_views}: method {self.method!r} takes no small views;"
                             f" multi-crop is for {', '.join(sorted(TAKES_LOCAL_VIEWS))} (or set train.local_views=0)")
        return self

    @model_validator(mode="after")
    def _auto_ranks_know_the_classes(self):
        if getattr(self.loss, "auto", False) and self.data.num_classes is None:
            raise ValueError(f"loss.k = {self.loss.k}, loss.k_end = {self.loss.k_end}: auto ranks follow the expected "
                             "same-class negatives per query, (batch - 1) / classes, so they need data.num_classes "
                             "(known or estimated): set -S data.num_classes=<n>")
        return self

    @model_validator(mode="after")
    def _batch_has_negatives(self):
        need = self.loss.negatives_needed()
        if self.train.batch_size - 1 < need:
            raise ValueError(
                f"train.batch_size = {self.train.batch_size} gives {self.train.batch_size - 1} negatives per image"
                f" on each device, fewer than the {need} that loss {self.loss.describe()} ranks: use a per-device"
                f" batch of at least {need + 1}")
        return self

    @model_validator(mode="after")
    def _adapt_batch_has_negatives(self):
        need, reid = self.loss.negatives_needed(), self.eval.reid
        if reid.adapt_epochs > 0 and reid.adapt_batch_size - 1 < need:
            raise ValueError(
                f"eval.reid.adapt_batch_size = {reid.adapt_batch_size} gives {reid.adapt_batch_size - 1} negatives"
                f" per image, fewer than the {need} that loss '{self.loss.name}' ranks (adaptation trains with"
                f" the same loss): use at least {need + 1}, or eval.reid.adapt_epochs = 0")
        return self


def _method_loss_mismatch(raw: dict) -> str | None:
    """The error for a loss section that is not the method's (e.g. `-S loss=byol` without `-S method=byol`)."""
    method, loss = raw.get("method"), raw.get("loss")
    if method not in METHOD_LOSSES or not isinstance(loss, dict) or loss.get("name") == METHOD_LOSSES[method]:
        return None
    name, expected = loss.get("name"), METHOD_LOSSES[method]
    owner = next((m for m, loss_name in METHOD_LOSSES.items() if loss_name == name), None)
    hint = f"; for {name!r} use -S method={owner}" if owner else ""
    return (f"method = {method!r} trains with loss.name = {expected!r}, but loss.name = {name!r}: switch methods "
            f"with -S method=<name>, which selects the loss group too{hint}")


class ParamsError(ValueError):
    """params.yaml is missing, unparsable or fails the schema; the message names every bad key."""


def _describe(err: dict, raw: dict) -> str:
    loc = [str(p) for p in err["loc"]]
    if loc[:1] == ["loss"] and len(loc) >= 3 and loc[1] in LOSS_KEYS:  # inside the schema that loss.name picked
        tag, loc = loc[1], ["loss", *loc[2:]]
        if err["type"] == "extra_forbidden":
            return (f"{'.'.join(loc)}: loss {tag!r} has no such key (value {err['input']!r}); it takes "
                    f"{', '.join(LOSS_KEYS[tag])}. Keys belong to their loss group (conf/loss/); switch methods "
                    "with -S method=<name>")
    if loc == ["loss"] and err["type"] == "union_tag_invalid":
        return f"loss.name = {err['input'].get('name')!r}: expected one of {', '.join(LOSS_KEYS)}"
    key = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key (value {err['input']!r}); check the spelling against conf/"
    if err["type"] == "missing":
        return f"{key}: missing required key"
    if err["type"] == "value_error":  # cross-field checks already name their keys and values
        return str(err["msg"]).removeprefix("Value error, ")
    return f"{key} = {err['input']!r}: {err['msg']}"


def validate_params(raw: dict, source: str = "params.yaml") -> Params:
    """Check a params mapping against the schema; raise ParamsError listing every problem."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        lines = [f"  - {_describe(err, raw)}" for err in e.errors()]
        raise ParamsError(f"{source}: invalid parameters:\n" + "\n".join(lines)) from None


def read_yaml(path: Path):
    """Parse YAML 1.2 as DVC does (ruamel): PyYAML would read OmegaConf's `1e-06` as a string."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(Path(path).read_text())


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate params.yaml (stages call this before doing anything else).

    The default is `params.yaml` in the working directory: DVC runs every stage from the repository root.
    """
    path = Path(path) if path is not None else Path("params.yaml")
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run `python -m pipeline.config compose` to create it from conf/")
    from ruamel.yaml import YAMLError

    try:
        raw = read_yaml(path)
    except YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    return validate_params(raw, str(path))


def compose(overrides: list[str] | None = None) -> dict:
    """Compose conf/ exactly as DVC's Hydra integration does and return it as a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=overrides or [])
    OmegaConf.resolve(cfg)
    return OmegaConf.to_container(cfg)


def write_composed(path: Path = PARAMS_FILE, overrides: list[str] | None = None) -> None:
    # Same writer as `dvc exp run` (dvc.utils.hydra), so DVC's own rewrites leave the file unchanged.
    from dvc.utils.hydra import compose_and_dump

    tmp = Path(str(path) + ".tmp")
    compose_and_dump(tmp, str(CONF_DIR), None, "config", str(REPO), overrides or [])
    validate_params(read_yaml(tmp), f"{path} (composed from conf/)")
    tmp.replace(path)


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "check"
    try:
        if cmd == "compose":
            write_composed(overrides=argv[1:])
            print(f"wrote {PARAMS_FILE.relative_to(REPO)} from conf/")
        elif cmd == "check":
            load_params()
            print("params.yaml: ok")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
