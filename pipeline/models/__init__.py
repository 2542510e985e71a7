"""Models: torchvision backbones, BYOL-style heads and the EMA target."""
from .backbone import build_backbone, export_backbone_state_dict
from .siamese import SiameseModel

__all__ = ["build_backbone", "export_backbone_state_dict", "SiameseModel"]
