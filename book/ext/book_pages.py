"""A Sphinx hook for the book's HTML pages (loaded through ``sphinx.local_extensions``).

In this book's Jupyter Book 1.x build the inline scripts that sphinx-thebe and sphinx-togglebutton
add when reading starts appear twice on every page. A repeated ``const THEBE_JS_URL = ...`` is a
SyntaxError in the reader's browser, so each page keeps the first copy of every script.
"""

from __future__ import annotations


def _script_key(js) -> tuple:
    # an inline script's file name is None or "" depending on how it was added
    return getattr(js, "filename", js) or "", tuple(sorted(getattr(js, "attributes", {}).items()))


def drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep the first of identical script entries (same file or body, same attributes)."""
    seen: set[tuple] = set()
    kept = []
    for js in context.get("script_files", []):
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", drop_repeated_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
