"""Markdown tables for the chapters' results, without pandas.

A chapter shows a table with ``display(markdown_table(header, rows))``; cells are formatted by the
caller (so each column states its own precision) and anything else goes through ``str``.
"""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence], caption: str = ""):
    """An IPython ``Markdown`` table with ``header`` and one line per row of ``rows``.

    ``caption`` (optional) is a paragraph above the table. Rows must have one cell per column.

    >>> markdown_table(["a", "b"], [[1, "x"], [2, "y"]]).data
    '| a | b |\\n|---|---|\\n| 1 | x |\\n| 2 | y |'
    """
    from IPython.display import Markdown

    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {list(row)} has {len(row)} cells, the header {list(header)} "
                             f"has {len(header)}")
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return Markdown((caption + "\n\n" if caption else "") + "\n".join(lines))
