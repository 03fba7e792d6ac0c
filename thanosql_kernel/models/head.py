"""SimCLR projection head: the MLP whose output the loss sees; search uses the layer before."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """Linear -> BatchNorm -> ReLU -> Linear, as lightly's SimCLRProjectionHead.

    The paper shows (section 4.2) that the representation *before* this head is the better
    one for downstream use, because the head learns to discard what the augmentations vary.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, output_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, input_dim) -> (B, output_dim)."""
        return self.layers(h)
