"""torch.distributed glue: a no-op for plain single-process runs, DDP under torchrun (one
process included: `torchrun --nproc_per_node=1` runs the same process group and DDP path as
many, which is how that path is checked on a machine with one GPU)."""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    joined: bool = False  # in a process group: launched by torchrun, whatever its size

    @property
    def enabled(self) -> bool:
        return self.joined

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA), with a timeout so
    that a rank that died brings the others down instead of hanging them."""
    if world_size_from_env() <= 1 and not launched():
        return DistInfo()
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=int(os.environ.get("BERTSENT_DIST_TIMEOUT", "600")))
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timeout)
    return DistInfo(rank=dist.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                    world_size=dist.get_world_size(), joined=True)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_objects(obj):
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def backend() -> str:
    """The process group's backend (nccl, gloo), for the start line of a joined run."""
    return str(dist.get_backend())


def launched() -> bool:
    """Started by torchrun (or a launcher like it): the rendezvous that env:// reads is set."""
    return all(name in os.environ for name in ("MASTER_ADDR", "MASTER_PORT", "RANK"))


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_env() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def say(message: str, dist: DistInfo | None = None) -> None:
    """One line on stderr from the main process only (before the process group exists, the
    launcher's RANK tells which one that is)."""
    if (dist.is_main if dist is not None else is_main_env()):
        print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def main_process_first(dist: DistInfo) -> Iterator[None]:
    """The main process does the work first (filling a cache); the others wait, then read it."""
    if not dist.is_main:
        barrier()
    yield
    if dist.is_main:
        barrier()


def wrap(model: torch.nn.Module, compile: bool, dist: DistInfo, device: torch.device
         ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(what training calls, what evaluation calls): compiled, then DDP-wrapped for training.
    Evaluation runs the model inside DDP: ranks hold unequal numbers of evaluation batches,
    and DDP's forward would wait for the others."""
    if compile:
        model = torch.compile(model, dynamic=False)
    if not dist.enabled:
        return model, model
    ids = [device.index] if device.type == "cuda" else None
    try:  # buffers (position ids) are equal on every rank: no sync before each forward
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                        forward_sync_buffers=False)
    except TypeError:  # a torch from before forward_sync_buffers
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                        broadcast_buffers=False)
    return ddp, model
