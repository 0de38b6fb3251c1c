"""Choosing the torch device (``"auto"`` takes a CUDA GPU when there is one, else the CPU), and
the CPU cores this process may use."""

from __future__ import annotations

import os

import torch


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """The device named by ``name`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    Raises ``ValueError`` for a CUDA device when no GPU is visible, rather than failing later.
    """
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda'") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return device


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the system reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
