"""The chapter notebooks: finding them, and keeping them free of stored outputs.

Notebooks live in ``notebooks/`` as ``NN_name.ipynb`` and are committed without outputs, so that
diffs stay readable and the book always shows what the code computes now. ``make strip`` (or
``python -m lib.notebooks strip FILE...``) removes outputs; the unit tests fail if any remain.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from lib.paths import NOTEBOOKS

_CHAPTER = re.compile(r"^(\d{2})_[a-z0-9_]+\.ipynb$")


def chapter_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks ``NN_name.ipynb`` in ``folder``, in chapter order."""
    return sorted(p for p in folder.glob("*.ipynb") if _CHAPTER.match(p.name))


def stored_outputs(path: Path) -> list[int]:
    """Indices of the code cells of ``path`` that carry outputs or an execution count."""
    cells = json.loads(Path(path).read_text())["cells"]
    return [
        i
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]


def strip(path: Path) -> bool:
    """Remove outputs and execution counts from ``path`` in place; True if anything changed."""
    path = Path(path)
    nb = json.loads(path.read_text())
    changed = False
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            changed = True
        cell["outputs"] = []
        cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.notebooks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    strip_cmd = sub.add_parser("strip", help="remove stored outputs from notebooks")
    strip_cmd.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.paths:
        if strip(path):
            print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
