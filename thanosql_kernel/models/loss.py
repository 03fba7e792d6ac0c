"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR (arXiv 2002.05709)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean NT-Xent over the 2N views: for view i its positive is the other view of the
    same image and its negatives are the 2N - 2 views of the other images.

    z1, z2: (N, D) projections of the two views (row k of each comes from image k), any
    scale (they are L2-normalised here). Returns a scalar tensor.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (N, D), got {tuple(z1.shape)}, {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T) / temperature
    # a view is never its own negative: -inf drops it from the softmax denominator
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positives)


class NTXentLoss(nn.Module):
    """``nt_xent_loss`` as a module with a fixed temperature, as lightly's NTXentLoss."""

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """z1, z2: (N, D) -> scalar loss."""
        return nt_xent_loss(z1, z2, self.temperature)


def multi_view_nt_xent_loss(z: torch.Tensor, views: int, temperature: float) -> torch.Tensor:
    """NT-Xent generalised to ``views`` >= 2 views per image (the multi-positive form of
    SupCon, arXiv 2004.11362, with each image its own class): for every view, every other
    view of the same image is a positive and the views of other images are negatives; the
    loss is the mean over views and positives of -log softmax. ``views`` = 2 is exactly
    ``nt_xent_loss``.

    z: (views * N, D), rows ordered view-major (row v * N + k is view v of image k).
    """
    if z.ndim != 2 or views < 2 or z.shape[0] % views:
        raise ValueError(f"z must be (views * N, D) with views >= 2, got {tuple(z.shape)}, "
                         f"views={views}")
    m = z.shape[0]
    n = m // views
    z = F.normalize(z, dim=1)
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(m, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_p = F.log_softmax(logits, dim=1)
    image = torch.arange(m, device=z.device) % n
    positive = (image[:, None] == image[None, :]) & ~self_mask
    return -(log_p.masked_fill(~positive, 0.0).sum(1) / (views - 1)).mean()
