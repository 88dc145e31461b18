"""torchrun integration: process-group init (NCCL on GPU, gloo on CPU), rank helpers, gathers.

``torchrun --nproc_per_node N tools/train.py ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; without
them everything runs as a single process and the helpers return rank 0 / world size 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo", "init_distributed", "cleanup", "is_dist", "get_rank", "get_world_size", "is_main_process",
    "barrier", "all_gather_objects", "all_reduce_sum", "all_reduce_tensor", "shard_indices",
    "epoch_order", "train_shard",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    backend: str | None


def init_distributed(use_cuda: bool) -> DistInfo:
    """Initialise the default process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistInfo(0, 1, 0, None)
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not is_dist():
        return [obj]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(value: float, device: torch.device | str = "cpu") -> float:
    """Sum of ``value`` over the ranks (``value`` itself in a single process)."""
    if not is_dist():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item()


def all_reduce_tensor(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``t`` reduced in place over the ranks (``"sum"`` or ``"max"``); ``t`` itself in a single process."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t


def shard_indices(n: int, rank: int | None = None, world: int | None = None) -> List[int]:
    """``rank::world`` slice of ``range(n)``: every index exactly once over the ranks, no padding.

    (DistributedSampler pads with duplicates so every rank has the same count, which would double-count
    videos in test metrics.)
    """
    rank = get_rank() if rank is None else rank
    world = get_world_size() if world is None else world
    return list(range(rank, n, world))


def epoch_order(n: int, seed: int, epoch: int) -> List[int]:
    """The global sample order of training epoch ``epoch``: a permutation of ``range(n)`` seeded by
    ``seed + epoch`` (the one ``DistributedSampler(shuffle=True, seed=seed)`` draws after ``set_epoch``)."""
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    return torch.randperm(n, generator=g).tolist()


def train_shard(order: List[int], consumed: int, rank: int, world: int, steps: int, per_step: int) -> List[int]:
    """Rank ``rank``'s next ``steps * per_step`` samples after the first ``consumed`` of ``order``.

    Rank r takes ``order[consumed:][r::world]``: with ``consumed = 0`` this is DistributedSampler's shard,
    and the first ``k * world`` samples of the order are exactly what every rank's first ``k`` took. So a
    run resumed mid-epoch with another world size (elastic) continues the same epoch order: no sample is
    seen twice or skipped, beyond the last partial step of the epoch, dropped as always.
    """
    return order[consumed:][rank::world][: steps * per_step]
