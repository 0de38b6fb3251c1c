"""Run the chapter notebooks with papermill for one profile.

Usage::

    python -m lib.run --profile quick                 # every chapter
    python -m lib.run --profile paper --only 04       # one chapter (by number or name)
    python -m lib.run --only 02 -p image_size 512 -p n_angles 720

Executed notebooks go to ``_build/runs/<profile>/`` (never into ``data/``). At the end a table
shows each chapter's status and run time; the exit status is non-zero if any chapter failed, and
the failing cell and its error are printed.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.notebooks import chapter_notebooks
from lib.paths import ROOT
from lib.profiles import PROFILE_NAMES, resolve


@dataclass
class ChapterRun:
    notebook: Path
    seconds: float
    error: str | None = None


def parse_value(text: str) -> Any:
    """A ``-p`` value: a Python literal (``3``, ``1e5``, ``True``, ``[1, 2]``) or else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def select(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """The notebooks whose number or name matches one of ``only`` (all when ``only`` is empty)."""
    if not only:
        return notebooks
    if any(not o.strip() for o in only):
        raise SystemExit("error: --only was given an empty chapter name; name chapters by "
                         "number (02) or name (simulating_ct)")

    def matches(nb: Path, o: str) -> bool:
        number, _, name = nb.stem.partition("_")
        return int(o) == int(number) if o.isdigit() else o in name or o == nb.stem

    chosen = [nb for nb in notebooks if any(matches(nb, o) for o in only)]
    if not chosen:
        names = ", ".join(nb.stem for nb in notebooks)
        raise SystemExit(f"error: --only {' '.join(only)} matches no chapter; chapters: {names}")
    return chosen


def check_parameters(notebooks: list[Path], overrides: dict[str, Any]) -> dict[Path, dict]:
    """Split ``overrides`` per notebook; a name no selected notebook declares is an error."""
    import papermill

    declared = {nb: set(papermill.inspect_notebook(str(nb))) for nb in notebooks}
    for nb, names in declared.items():
        if "profile" not in names:
            raise SystemExit(f"error: {nb.name} has no `profile` in a cell tagged 'parameters'")
    known = set().union(*declared.values())
    unknown = sorted(set(overrides) - known)
    if unknown:
        valid = "\n".join(f"  {nb.stem}: {', '.join(sorted(n))}" for nb, n in declared.items())
        raise SystemExit(f"error: unknown parameter(s) {unknown}; valid parameters:\n{valid}")
    return {nb: {k: v for k, v in overrides.items() if k in names} for nb, names in declared.items()}


def run_chapter(notebook: Path, out_dir: Path, parameters: dict[str, Any]) -> ChapterRun:
    import papermill

    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(out_dir / notebook.name),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=True,
        )
    except papermill.PapermillExecutionError as err:
        message = (
            f"cell {err.exec_count} failed:\n{err.source}\n---\n{err.ename}: {err.evalue}"
        )
        return ChapterRun(notebook, time.perf_counter() - start, message)
    return ChapterRun(notebook, time.perf_counter() - start)


def report(runs: list[ChapterRun]) -> str:
    width = max(len(r.notebook.stem) for r in runs)
    lines = [f"{'chapter':<{width}}  status  seconds", "-" * (width + 17)]
    for r in runs:
        lines.append(f"{r.notebook.stem:<{width}}  {'ok' if r.error is None else 'FAILED':<6}  "
                     f"{r.seconds:7.1f}")
    lines.append(f"{'total':<{width}}  {'':<6}  {sum(r.seconds for r in runs):7.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="default")
    parser.add_argument("--only", nargs="+", metavar="CHAPTER",
                        help="chapter numbers or names, e.g. 02 or simulating_ct")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="override one notebook parameter")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder for executed notebooks (default _build/runs/PROFILE)")
    args = parser.parse_args(argv)

    notebooks = select(chapter_notebooks(), args.only)
    overrides = {name: parse_value(value) for name, value in args.parameter}
    if "profile" in overrides:
        raise SystemExit("error: set the profile with --profile, not -p profile")
    per_notebook = check_parameters(notebooks, overrides)
    for nb, values in per_notebook.items():
        try:
            resolve(nb.stem.partition("_")[2], args.profile, **values)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from err
    out_dir = (args.output or ROOT / "_build" / "runs" / args.profile).resolve()
    if out_dir.is_relative_to((ROOT / "data").resolve()):
        raise SystemExit("error: --output may not be inside data/ (shipped artefacts only)")
    out_dir.mkdir(parents=True, exist_ok=True)

    runs = []
    for i, nb in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {nb.stem} (profile {args.profile})", flush=True)
        run = run_chapter(nb, out_dir, {"profile": args.profile, **per_notebook[nb]})
        if run.error:
            print(f"\n{nb.name}: {run.error}\n", file=sys.stderr, flush=True)
        runs.append(run)

    print("\n" + report(runs))
    print(f"executed notebooks: {out_dir}")
    failed = [r.notebook.stem for r in runs if r.error]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
