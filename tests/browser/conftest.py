"""The built book, served on localhost, and headless Chromium with the network cut off.

These tests read a built book: ``make browser`` (part of ``make test``, after ``make book-quick``)
sets ``BOOK_HTML`` to its HTML folder. Without ``BOOK_HTML`` they are skipped, so that the unit
tests never need a build.
"""

from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lib.paths import ROOT

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home, which a closed network
# refuses; each test page gets a fresh, empty profile.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def built_book() -> Path | None:
    """The HTML folder named by ``BOOK_HTML`` (relative to the repository), or None if unset."""
    folder = os.environ.get("BOOK_HTML")
    return None if not folder else (ROOT / folder).resolve()


def html_pages(folder: Path) -> list[Path]:
    """Every HTML page of the book: the chapters and prose pages, the index and search pages;
    not redirect stubs (the root ``index.html``) nor anything under ``_static/`` or ``_modules/``
    (viewcode's source listings), which the link check covers."""
    return sorted(p for p in folder.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(folder).parts[:-1])
                  and 'http-equiv="Refresh"' not in p.read_text(encoding="utf-8")[:2000])


@pytest.fixture(scope="session")
def book() -> Path:
    folder = built_book()
    if folder is None:
        pytest.skip("BOOK_HTML is not set: `make browser` checks the built quick book")
    if not (folder / "index.html").is_file():
        pytest.fail(f"no built book at BOOK_HTML={folder}: run `make book-quick` first")
    return folder


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test reports failed requests itself
        pass


@contextmanager
def serve(folder: Path):
    """``http://127.0.0.1:PORT/`` serving ``folder`` while the block runs."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def server(book):
    """The built book on localhost, for the life of the test session."""
    with serve(book) as origin:
        yield origin


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's package (`apt-get install "
                    "chromium`) or set CHROMIUM to the browser's path")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            args=CHROMIUM_ARGS, headless=True, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        yield context
        context.close()
