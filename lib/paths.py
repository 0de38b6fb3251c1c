"""Where things live: the repository, its notebooks and shipped data, and the on-disk cache."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (``lib`` is installed editable from it).
ROOT = Path(__file__).resolve().parents[1]
#: The chapter notebooks.
NOTEBOOKS = ROOT / "notebooks"
#: Small shipped artefacts (trained checkpoints and their manifest). Builds never write here.
DATA = ROOT / "data"


def cache_dir(kind: str) -> Path:
    """A folder for cached artefacts of one ``kind`` (for example ``"datasets"``), created on demand.

    The root is ``$CTBOOK_CACHE`` when set, otherwise ``~/.cache/ctbook``: outside git, shared by
    every checkout on the machine, and safe to delete (everything in it is recomputed from seeds).
    """
    root = Path(os.environ.get("CTBOOK_CACHE") or Path.home() / ".cache" / "ctbook")
    folder = root / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder
