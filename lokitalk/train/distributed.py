"""torch.distributed for `lokitalk pretrain`: one process per device, launched by torchrun.

    torchrun --nproc-per-node 8 -m lokitalk.cli pretrain AVATARS... --out PRIOR        # one machine
    torchrun --nnodes 2 --node-rank R --rdzv-endpoint HOST:PORT --nproc-per-node 8 -m lokitalk.cli pretrain ...

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them the run is
a single process and nothing here touches torch.distributed. Under torchrun there is a process
group even for one rank, so that a one-GPU machine runs the NCCL path too (NCCL refuses two ranks
on one device). NCCL on CUDA devices, gloo on CPU.
Shared weights are wrapped in DistributedDataParallel (gradients averaged across ranks);
per-identity parameters stay on the rank that owns the identity (round-robin by index).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    launched: bool = False  # started by torchrun: a process group, even for one rank

    @property
    def enabled(self) -> bool:
        return self.launched or self.world_size > 1

    @property
    def backend(self) -> str | None:
        return dist.get_backend() if self.enabled and dist.is_initialized() else None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owned(self, count: int) -> list[int]:
        """The items (identities) this rank owns: every world_size-th, from its rank."""
        return list(range(self.rank, count, self.world_size))


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (or run alone). `device`: auto, cpu or cuda."""
    launched = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device != "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import InputError

        raise InputError("--device cuda asked for, but this torch has no CUDA device")
    if cuda:
        index = local if world > 1 else (torch.device(device).index or 0 if device != "auto" else 0)
        torch.cuda.set_device(index)
        dev = torch.device("cuda", index)
    else:
        dev = torch.device("cpu")
    if (launched or world > 1) and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev, launched)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def wrap(module: nn.Module, info: DistInfo) -> nn.Module:
    """DDP around the shared weights under torchrun (the module itself in a plain single process)."""
    if not info.enabled:
        return module
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    # buffers stay each rank's own (no sync at init or in forward). torch 2.13 deprecates the flag
    # but says to keep it until its replacement can skip the sync at init; torch 2.11 (the GPU
    # machine) has no replacement at all
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        return DistributedDataParallel(module, broadcast_buffers=False)


def mean_over_ranks(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size


def gather_to_main(obj, info: DistInfo) -> list | None:
    """Every rank's `obj` on rank 0 (a list by rank), None elsewhere."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out
