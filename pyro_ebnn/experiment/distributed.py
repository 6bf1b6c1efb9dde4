"""Data-parallel training on several processes with ``torch.distributed``, started by ``torchrun``:

    torchrun --standalone --nproc_per_node 2 -m pyro_ebnn.run train --config ... --out RUN

Every process builds the same model (same seed), reads its own share of every epoch's training
images (a ``DistributedSampler``: a fresh permutation per epoch, the same on every process), and
computes the negative ELBO of its batch with the data plate scaled by the *full* training-set size
N. The gradients are averaged over the processes before each optimizer step, so that a step is
the step of one process on the union of the batches:

    mean_r grad [KL + N / B sum_{i in batch r} -log p(y_i | x_i)]
        = grad [KL + N / (R B) sum_{i in all R batches} -log p(y_i | x_i)].

Process 0 validates, writes checkpoints, the selected model, metrics and figures; the others wait
for it. NCCL on GPUs (one per process, ``LOCAL_RANK``), gloo on CPUs.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Group", "join"]


@dataclass(frozen=True)
class Group:
    """The processes training one model: ``rank`` of this one among ``size`` (1: no others)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, parameters):
        """Replace every gradient by its mean over the processes (one all-reduce of all gradients)."""
        if self.size == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def broadcast(self, value):
        """Process 0's ``value`` on every process (any picklable object)."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list:
        """Every process's ``value``, in rank order, on every process."""
        if self.size == 1:
            return [value]
        out = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def barrier(self):
        if self.size > 1:
            dist.barrier()


def join(device: torch.device) -> tuple[Group, torch.device]:
    """The group this process belongs to and the device it trains on. Under ``torchrun``
    (``WORLD_SIZE`` > 1 in the environment) the process group is started here (NCCL for CUDA, gloo
    otherwise) and closed when the process exits, and each process takes the GPU ``LOCAL_RANK``;
    otherwise a group of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return Group(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    return Group(rank, size, local), device


def _leave():
    """Close the process group before the interpreter exits: a gloo or NCCL group left to the
    interpreter's teardown can abort the process (its worker threads are destroyed unjoined)."""
    if dist.is_initialized():
        dist.destroy_process_group()
