"""The methods by name: `build_method(params)` builds the configured one (docs/methods.md)."""
from __future__ import annotations

from .base import Method
from .siamese import BYOL, InfoNCEOnBYOL, SiameseMethod, Triplet
from .simclr import SimCLR
from .simsiam import SimSiam

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (Triplet, BYOL, InfoNCEOnBYOL, SimCLR, SimSiam)}


def build_method(params) -> Method:
    """The method `params.method` with `params.model`'s backbone and head widths."""
    if params.method not in METHODS:
        raise ValueError(f"method = {params.method!r}: expected one of {', '.join(METHODS)}")
    cls, m = METHODS[params.method], params.model
    if issubclass(cls, SiameseMethod):
        return cls(m.arch, m.stem, m.projector_hidden, m.projector_out, m.predictor_hidden)
    return cls(m.arch, m.stem, m.projector_hidden, m.projector_out)


