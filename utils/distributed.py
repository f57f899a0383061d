"""The little that training needs from torch.distributed, so one script runs alone or under torchrun."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process.

    NCCL on CUDA, gloo on the CPU. Each CUDA process takes the GPU of its LOCAL_RANK.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return info


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's `obj`, in rank order (just `[obj]` in a single process)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def cleanup(info: DistInfo, together: bool = False) -> None:
    """Leave the process group. `together`: every rank is known to get here (the run ended, or stopped on
    a NaN that all ranks saw): wait for the others first, since a rank that tears gloo down while another
    still talks to it can abort. A rank that stops alone must not wait: nobody would come."""
    if info.enabled and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def average_across_ranks_(tensors, info: DistInfo) -> None:
    """Replace each tensor, in place, by its mean over all ranks."""
    if not info.enabled:
        return
    for t in tensors:
        dist.all_reduce(t)
        t /= info.world_size
