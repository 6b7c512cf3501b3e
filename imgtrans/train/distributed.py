"""Multi-process training under ``torchrun``: process group, ranks and collective decisions."""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: its rank among ``world_size`` processes (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, samples and writes checkpoints."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device_type: str) -> "Distributed":
        """Join the process group that ``torchrun`` describes in the environment, if any.

        The backend is NCCL for CUDA and Gloo for the CPU.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is true on any process (true alone when not distributed)."""
        if not self.enabled:
            return flag
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, tensors: dict[str, torch.Tensor], device: torch.device) -> list[dict[str, torch.Tensor]] | None:
        """Every process's ``tensors`` (on the CPU) on the main process in rank order, ``None`` on the others.

        A collective: every process calls it at the same point (the trainer's checkpoint saves).
        The tensors travel as objects, as their names and shapes may differ between processes
        (a pool that holds fewer images), serialised without pickle where torch offers it
        (``weights_only``); NCCL sends them through this process's GPU ``device``.
        """
        local = {k: v.detach().cpu() for k, v in tensors.items()}
        if not self.enabled:
            return [local]
        gathered: list | None = [None] * self.world_size if self.is_main else None
        safe = {"weights_only": True} if "weights_only" in inspect.signature(dist.gather_object).parameters else {}
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            dist.gather_object(local, gathered, dst=0, **safe)
        return gathered

    def close(self) -> None:
        """Leave the process group."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
