"""Writing files so that nothing is lost: a file either appears complete or not at all.

Each writer writes to a temporary file ``.NAME.PID.XXXX.tmp`` in the destination folder and renames
it over the target (an atomic operation on POSIX file systems). An interrupted write leaves the
old file, or none; the temporary file a killed process leaves behind is removed by the next write
to the same target (its process id is no longer alive). :func:`locked` serialises
read-modify-write updates of a folder's files between processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch


def atomic_save(obj, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    _atomic(path, "wb", lambda handle: torch.save(obj, handle))


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` atomically."""
    _atomic(path, "w", lambda handle: handle.write(text))


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``flock`` on the folder itself, no lock file):
    other processes entering ``locked`` on the same folder wait until it is released."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files of writes to ``path`` whose process no longer runs."""
    removed = []
    for tmp in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        pid = tmp.name[len(Path(path).name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _atomic(path: Path, mode: str, write: Callable) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
