"""Writing files so that nothing is lost: a file either appears complete or not at all.

Each writer writes to a temporary file in the destination folder and renames it over the target
(an atomic operation on POSIX file systems). An interrupted write leaves the old file, or none.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch


def atomic_save(obj, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    _atomic(path, "wb", lambda handle: torch.save(obj, handle))


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` atomically."""
    _atomic(path, "w", lambda handle: handle.write(text))


def _atomic(path: Path, mode: str, write: Callable) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
