"""Data-parallel training over several processes with torch.distributed.

Launched with ``torchrun --nproc_per_node N -m lib.train ...``; the gloo backend runs on a CPU,
NCCL on GPUs. Each process takes every N-th sample of the same global batch, and gradients are
averaged across processes after each backward pass, so N processes compute the same update as one
process with the whole batch (up to floating-point summation order).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup(device: torch.device) -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def average_gradients(module: torch.nn.Module) -> None:
    """Replace each parameter's gradient by its mean over all processes (no-op for one)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world


def teardown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
