"""What training under torchrun adds, so that N processes with per-process batch B train as one process with batch N x B:

- batch norm with the statistics of the global batch (torch's SyncBatchNorm on CUDA; GlobalBatchNorm2d on the CPU,
  where SyncBatchNorm refuses to run), so no rank normalises with its own quarter of the batch;
- gather_rows: every rank's embeddings in rank order with the gradient flowing back to the rank that made them, so
  the contrastive loss sees the whole global batch (its negatives included) on every rank;
- ImageTower: the encoder's network as the module DistributedDataParallel wraps (embed_image as its forward).

Every rank computes the same global loss; gather_rows' backward sums the ranks' gradients (N times each rank's
share) and DDP averages over the N ranks, so the parameters get exactly the single-process gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; every rank's output depends on every input, so the gradient is summed over ranks too."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class _GatherRows(torch.autograd.Function):
    """Concatenate every rank's rows in rank order (equal row counts); backward hands each rank the summed gradient
    of its own rows."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, rows.contiguous())
        ctx.rank, ctx.count = dist.get_rank(), rows.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total[ctx.rank * ctx.count:(ctx.rank + 1) * ctx.count]


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """[B, ...] on each rank -> [world x B, ...] on every rank, rank 0's rows first; differentiable."""
    return _GatherRows.apply(rows)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that normalises a training batch with the mean and variance of the whole global batch (all ranks),
    and updates the running statistics with them: SyncBatchNorm for the CPU and gloo. Alone or in eval mode, plain BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        per_channel = (0, 2, 3)
        sums = _AllReduceSum.apply(torch.cat([x.sum(per_channel), x.new_tensor([x.numel() / x.shape[1]])]))
        count = sums[-1]
        mean = sums[:-1] / count
        centred = x - mean[None, :, None, None]
        variance = _AllReduceSum.apply(centred.square().sum(per_channel)) / count  # two passes: as exact as F.batch_norm's
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(variance * count / (count - 1), factor)  # unbiased, as BatchNorm2d keeps it
        normalised = centred * torch.rsqrt(variance + self.eps)[None, :, None, None]
        return normalised * self.weight[None, :, None, None] + self.bias[None, :, None, None] if self.affine else normalised


def synchronise_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` with every BatchNorm2d computing global-batch statistics: SyncBatchNorm on CUDA, GlobalBatchNorm2d
    elsewhere. Parameters and buffers keep their names, so state dicts (and checkpoints) are unchanged."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synchronised = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            synchronised.load_state_dict(child.state_dict())
            synchronised.train(child.training)
            setattr(module, name, synchronised.to(device))
        else:
            synchronise_batch_norm(child, device)
    return module


class ImageTower(nn.Module):
    """The encoder's network input -> embedding (embed_image) as a forward, for DistributedDataParallel to wrap."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder.embed_image(image)
