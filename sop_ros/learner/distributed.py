"""The learner's view of torch.distributed: one process or ``torchrun --nproc-per-node N``.

:func:`init_distributed` reads the variables torchrun sets; without them the
learner runs as a single process and every collective below is a no-op.
Backends: nccl when CUDA is available, gloo otherwise.

Threads: collectives are called only from the training thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DistContext", "init_distributed"]


@dataclass(frozen=True, kw_only=True)
class DistContext:
    """Rank, world size and device of this learner process."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """True on the rank that ingests, publishes, logs and checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    def wrap(self, module: nn.Module) -> nn.Module:
        """Return ``module`` wrapped in DDP when distributed, else unchanged."""
        if not self.active:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def broadcast(self, value: Any) -> Any:
        """Return rank 0's ``value`` on every rank (picklable, small)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, value: Any) -> list[Any]:
        """Return every rank's ``value``, in rank order."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.active:
            dist.barrier()


def init_distributed(backend: str | None = None) -> DistContext:
    """Join the process group torchrun described, or return a single-process context.

    Args:
        backend: "gloo" or "nccl"; by default nccl with CUDA, gloo without.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size <= 1:
        return DistContext(device=device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if cuda else "gloo"))
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)
