"""torchvision ResNets as feature extractors, and export back to a plain torchvision state_dict."""
from __future__ import annotations

import torch
import torchvision
from torch import nn

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101")


def build_backbone(arch: str, stem: str = "imagenet") -> tuple[nn.Module, int]:
    """A torchvision ResNet with `fc` replaced by Identity; returns (model, feature dimension).

    stem='small' swaps the 7x7/2 convolution + max-pool for a 3x3/1 convolution (CIFAR-style) for tiny
    images; such a backbone only loads into a torchvision ResNet whose stem was changed the same way.
    """
    if arch not in ARCHS:
        raise ValueError(f"model.arch = {arch!r}: expected one of {', '.join(ARCHS)}")
    net = getattr(torchvision.models, arch)(weights=None)
    if stem == "small":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif stem != "imagenet":
        raise ValueError(f"model.stem = {stem!r}: expected 'imagenet' or 'small'")
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


def export_backbone_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """Weights keyed exactly as torchvision's ResNet expects (`fc.*` absent), on CPU, contiguous.

    `torchvision.models.resnet50().load_state_dict(sd, strict=False)` then reports only `fc.weight` and
    `fc.bias` missing. SyncBatchNorm layers export as BatchNorm2d (same keys).
    """
    module = backbone.module if hasattr(backbone, "module") else backbone
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()
            if not k.startswith("fc.")}
