"""One model trained by several processes, on one machine or several, with PyTorch's own
DistributedDataParallel, launched by torchrun:

    torchrun --standalone --nproc_per_node N -m afm train ...              # one machine
    torchrun --nnodes M --node_rank R --nproc_per_node N \\
             --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m afm train ...  # M machines

Each process trains on its own contiguous shard of the training rows (equal shares, so every
process runs the same number of steps) with 1/N of the global batch, `--batch-size`. The
objective is the authors' sum over the batch (afm.train), so DDP's gradient average is undone
by weighting each process's data term by N: the step equals a single process's step on the
whole global batch, the regularizer counted once. Evaluation is shared the same way and the
predictions gathered, so every process takes the same early-stopping decision. gloo on CPUs,
NCCL on GPUs (one per process, `cuda:LOCAL_RANK`). Sparse embedding gradients go through
gloo's sparse all-reduce (an all-gather of the rows each process touched); NCCL has none, so
on GPUs the gradients are dense.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from afm.errors import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the group, and the few collectives training needs."""

    rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def training_shard(self, rows: int) -> range:
        """Equal contiguous shares; the last `rows % world_size` rows are left out, so every
        process runs the same number of steps."""
        share = rows // self.world_size
        return range(self.rank * share, (self.rank + 1) * share)

    def evaluation_shard(self, rows: int) -> range:
        """Contiguous shares of every row (they differ in size by at most one)."""
        return range(self.rank * rows // self.world_size, (self.rank + 1) * rows // self.world_size)

    def sum(self, values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        """Wait until every process gets here: before tearing the group down, so that no process
        closes its connections while the first is still saving (gloo then aborts the peer with
        "terminate called without an active exception", seen once in a few dozen test runs)."""
        dist.barrier()

    def any(self, flag: bool) -> bool:
        return self.sum([float(flag)])[0] > 0

    def gather(self, local: np.ndarray, rows: int) -> np.ndarray:
        """Every process's `evaluation_shard` part of a float32 array of `rows`, in row order."""
        world = self.world_size
        sizes = [(r + 1) * rows // world - r * rows // world for r in range(world)]  # each evaluation_shard
        padded = torch.zeros(max(sizes), dtype=torch.float32, device=self.device)
        padded[:len(local)] = torch.from_numpy(np.ascontiguousarray(local, dtype=np.float32)).to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return np.concatenate([part[:size].cpu().numpy() for part, size in zip(parts, sizes)])

    def wrap(self, model: torch.nn.Module) -> DistributedDataParallel:
        """The model under DDP. Its buffers (the pair index) never change, so none are sent per step."""
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # torch 2.13 renamed the option; 2.11 knows only the old name.
        parameters = inspect.signature(DistributedDataParallel.__init__).parameters
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in parameters else "broadcast_buffers"
        return DistributedDataParallel(model, device_ids=device_ids, **{no_sync: False})


class OneProcess(ProcessGroup):
    """A training by this process alone: the same interface, no collectives (world size 1)."""

    def __init__(self, device: torch.device):
        super().__init__(0, 1, device, "")

    def sum(self, values: list[float]) -> list[float]:
        return list(values)

    def barrier(self) -> None:
        pass

    def gather(self, local: np.ndarray, rows: int) -> np.ndarray:
        return local

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model


def start(device_name: str) -> ProcessGroup:
    """Join the group torchrun set up: NCCL with this process's GPU when `device_name` is auto
    (and there is one) or cuda, gloo on the CPU."""
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    wants_gpu = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if wants_gpu:
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"process {local_rank} on this machine has no GPU of its own "
                              f"({torch.cuda.device_count()} here); lower --nproc_per_node")
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    return ProcessGroup(rank, world_size, device, backend)


def stop(group: ProcessGroup | None) -> None:
    if group is not None and dist.is_initialized():
        dist.destroy_process_group()
