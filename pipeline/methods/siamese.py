"""The paper's framework and the methods that share it: an online network with a predictor, an EMA target
network, the loss applied in both directions (`pipeline/models/siamese.py`). Only the loss differs."""
from __future__ import annotations

from ..models import SiameseModel
from .base import Method


class SiameseMethod(SiameseModel, Method):
    uses_target = True

    @classmethod
    def from_params(cls, params) -> "SiameseMethod":
        m = params.model
        return cls(m.arch, m.stem, m.projector_hidden, m.projector_out, m.predictor_hidden)

    def load_backbone(self, state: dict) -> None:
        self.backbone.load_state_dict(state)
        self.target_backbone.load_state_dict(state)  # the target starts as the online network


class Triplet(SiameseMethod):
    """The paper's method: truncated triplet loss (docs/method.md section 2) on BYOL's model."""
    name, loss = "triplet", "truncated_triplet"


class BYOL(SiameseMethod):
    """BYOL (Grill et al., 2020): 2 - 2 cos between the online prediction and the target projection."""
    name, loss = "byol", "byol"


class InfoNCEOnBYOL(SiameseMethod):
    """InfoNCE between online predictions and target projections, on BYOL's model (not SimCLR)."""
    name, loss = "infonce", "infonce"
