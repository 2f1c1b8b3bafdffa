"""torchrun / DDP plumbing: one process per GPU (or per CPU worker with gloo), rank 0 writes."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes in the environment; a plain run is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def mean_over_ranks(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average a scalar over ranks (for logging); identity in a single process."""
    if not ctx.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / ctx.world_size


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class ResumableSampler(torch.utils.data.Sampler[int]):
    """Shuffled, rank-sharded indices that depend only on (seed, epoch), and can start mid-epoch.

    Like ``DistributedSampler`` (pads to a multiple of the world size), plus ``start`` to skip
    the samples a resumed run has already seen this epoch.
    """

    def __init__(self, length: int, ctx: DistContext, seed: int, shuffle: bool = True) -> None:
        self.length, self.ctx, self.seed, self.shuffle = length, ctx, seed, shuffle
        self.epoch, self.start = 0, 0
        self.per_rank = -(-length // ctx.world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
        else:
            order = torch.arange(self.length)
        padded = torch.cat([order, order[: self.per_rank * self.ctx.world_size - self.length]])
        mine = padded[self.ctx.rank::self.ctx.world_size].tolist()
        return iter(mine[self.start:])

    def __len__(self) -> int:
        return self.per_rank - self.start
