"""What a self-supervised method is to the training loop (docs/methods.md).

A method is an `nn.Module` that owns its backbone, heads and target network (if it has one) and turns a
batch of views into its loss. The loop owns everything the methods share: the optimiser and its schedule,
the EMA momentum schedule, checkpoints, DDP, precision and the monitor.
"""
from __future__ import annotations

from typing import ClassVar, Iterator

import torch
from torch import nn

from ..models import export_backbone_state_dict


class Method(nn.Module):
    """Base of every method. Subclasses set `name` and `loss` (its `loss.name`) and implement `forward`.

    forward(view1, view2, loss_fn, local=()) -> (loss, parts, (queries, keys)):
      - loss: the scalar to back-propagate;
      - parts: named detached scalars that make up the loss (logged when the loss stops being finite);
      - queries, keys: detached [B, D] embeddings of view 1 and of view 2 as the loss compares them (row i
        of each is image i), from which the loop measures how often the hardest negative is a same-class
        image (the false-negative diagnostic, comparable across methods).
    `loss_fn` is the configured loss, called as the method's published formula says.
    """

    name: ClassVar[str]
    loss: ClassVar[str]
    uses_target: ClassVar[bool] = False  # an EMA target network (train.base_ema applies)

    backbone: nn.Module

    @classmethod
    def from_params(cls, params) -> "Method":
        """The method with params.model's backbone and head widths (methods with keys of their own read them
        from params.loss, the group that holds the active method's keys)."""
        m = params.model
        return cls(m.arch, m.stem, m.projector_hidden, m.projector_out)

    def online_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) pairs the optimiser updates: every trainable one unless the method says otherwise."""
        return ((name, p) for name, p in self.named_parameters() if p.requires_grad)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """The EMA target's update after each optimiser step; nothing for methods without a target."""

    def load_backbone(self, state: dict) -> None:
        """Start from these backbone weights (a plain torchvision state_dict), target network included."""
        self.backbone.load_state_dict(state)

    def export_backbone(self) -> dict:
        """The online backbone as a plain torchvision state_dict (what `backbone.pt` holds)."""
        return export_backbone_state_dict(self.backbone)
