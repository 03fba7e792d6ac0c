"""SimCLR projection head: the MLP whose output the loss sees, and search embeds with too."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """Linear -> BatchNorm -> ReLU -> Linear, as lightly's SimCLRProjectionHead.

    The paper finds (section 4.2) the representation *before* this head better for linear
    classification, since the head learns to discard what the augmentations vary. For search
    by cosine similarity, the quantity NT-Xent trains, this head's output measured better than
    every earlier layer (``bench/QUALITY.md``, the layer probe), so ``train.embed`` uses it.
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
