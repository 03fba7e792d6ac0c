"""Data-parallel SimCLR: N processes, each with its part of every batch, that train exactly
like one process holding the whole batch.

Three things make N workers with B images each equal one process with N x B (SimCLR's own
recipe, section B.9 of arXiv 2002.05709, "global BN" and negatives from every device):

- **the loss sees every worker's embeddings**: ``gather`` brings all of them to each worker,
  which computes the NT-Xent of the whole batch (the same number on every worker: the loss
  one process would compute). Only the worker's own rows carry its gradient; the others'
  rows are constants there and get their gradient on their own worker, so each worker's
  backward is the exact partial derivative of the one loss by what it holds.
- **BatchNorm normalises by the whole batch's statistics** (``GlobalBatchNorm``): each
  worker's sums and sums of squares are summed over all workers. Per-worker statistics would
  let each worker's batch tell its images apart by their BatchNorm shift alone, the "leak"
  the SimCLR paper names, and would make N x B train like N separate small batches.
  ``torch.nn.SyncBatchNorm`` does this only on GPUs; this does it on any device, its
  backward summing the statistics' gradient over workers.
- **gradients are summed, not averaged** (``sum_gradients``): each worker's gradient is its
  share of the one loss's gradient, so their sum is that gradient.

The random numbers match too: every worker draws the batch order and each image's
augmentation from generators seeded alike, for the whole batch, and keeps its part
(``transforms._Draws``). What differs from one process is the order of floating-point sums.

Nothing here knows Ray: any ``torch.distributed`` process group will do (Ray Train sets one
up on the cluster; the tests use two local processes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class Shard:
    """This worker's place among ``size`` workers, and the seed they all train from."""

    rank: int
    size: int
    seed: int

    def sizes(self, count: int) -> list[int]:
        """How many of ``count`` images each worker takes (``torch.tensor_split``'s split)."""
        return [count // self.size + (r < count % self.size) for r in range(self.size)]

    def part(self, rows: torch.Tensor) -> torch.Tensor:
        """This worker's part of a batch's ``rows``."""
        return torch.tensor_split(rows, self.size)[self.rank]

    def view_rows(self, count: int, views: int) -> torch.Tensor:
        """Where this worker's views sit among all ``views * count`` views of a batch of
        ``count`` images (view-major: row v * count + k is view v of image k)."""
        sizes = self.sizes(count)
        first = sum(sizes[:self.rank])
        mine = torch.arange(first, first + sizes[self.rank])
        return torch.cat([v * count + mine for v in range(views)])


class _SumOverWorkers(torch.autograd.Function):
    """The sum of a tensor over all workers; its backward sums the gradient the same way
    (each worker's use of the sum is part of the one loss)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total


def gather(z: torch.Tensor, shard: Shard, count: int, views: int) -> torch.Tensor:
    """Every worker's embeddings ``z`` (this worker's ``views * part`` rows, view-major) as
    the whole batch's (``views * count`` rows, view-major, as one process would have them).
    Only this worker's rows keep their gradient."""
    sizes = shard.sizes(count)
    widest = max(sizes)
    mine = z.view(views, sizes[shard.rank], z.shape[-1])
    padded = F.pad(mine.detach(), (0, 0, 0, widest - sizes[shard.rank])).contiguous()
    pieces = [torch.empty_like(padded) for _ in range(shard.size)]
    dist.all_gather(pieces, padded)
    parts = [mine if r == shard.rank else piece[:, :sizes[r]] for r, piece in enumerate(pieces)]
    return torch.cat(parts, dim=1).reshape(views * count, z.shape[-1])


def sum_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Sum every parameter's gradient over the workers, in one message."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm (1-d or 2-d) whose training statistics are the whole batch's, over every
    worker. Its parameters and buffers are ``nn.BatchNorm2d``'s, so a saved model loads into
    the plain layer; in eval mode it is the plain layer."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2-d, 3-d or 4-d input, got {input.dim()}-d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        local = torch.cat([xf.sum(dims), xf.square().sum(dims),
                           xf.new_full((1,), x.numel() // x.shape[1])])
        total = _SumOverWorkers.apply(local)
        c = x.shape[1]
        count = total[-1].detach()
        mean = total[:c] / count
        var = (total[c:2 * c] / count - mean.square()).clamp(min=0.0)
        if self.track_running_stats:
            self._track(mean.detach(), var.detach() * (count / (count - 1).clamp(min=1)))
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """Running statistics as ``nn.BatchNorm2d`` keeps them (momentum None: the
        cumulative average, which ``swa_utils.update_bn`` uses)."""
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased_var, alpha=factor)


def global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm made a ``GlobalBatchNorm`` holding the same values
    (in place; the module is returned for convenience)."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            layer = GlobalBatchNorm(child.num_features, child.eps, child.momentum,
                                    child.affine, child.track_running_stats)
            layer.load_state_dict(child.state_dict())
            layer.to(next(iter(child.state_dict().values())).device)
            setattr(module, name, layer)
        else:
            global_batchnorm(child)
    return module
