"""The methods by name: `build_method(params)` builds the configured one (docs/methods.md)."""
from __future__ import annotations

from .base import Method
from .emp_ssl import EMPSSL
from .proto import Proto
from .siamese import BYOL, InfoNCEOnBYOL, Triplet
from .simclr import SimCLR
from .simsiam import SimSiam

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (Triplet, BYOL, InfoNCEOnBYOL, SimCLR, SimSiam, EMPSSL,
                                                               Proto)}


def build_method(params) -> Method:
    """The method `params.method` (the params schema has checked the name against the catalog)."""
    return METHODS[params.method].from_params(params)
