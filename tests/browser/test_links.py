"""Every internal link and anchor of the built book resolves, and nothing is loaded from outside.

Offline and without a browser: each ``href`` and ``src`` of every HTML file is resolved against
the file's own location; a link to a page must name an existing file, and a ``#fragment`` must be
an ``id`` (or ``name``) on the page it points to. Links to other sites are allowed (a reader
follows them on purpose), but nothing a page *loads* (scripts, styles, images, frames) may come
from another site.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bs4 import BeautifulSoup

# attributes a page follows (a) and those it loads by itself (the others)
FOLLOWED = {("a", "href"), ("area", "href")}
LOADED = {("link", "href"), ("script", "src"), ("img", "src"), ("iframe", "src"),
          ("source", "src"), ("video", "src"), ("audio", "src"), ("embed", "src")}


@cache
def parse(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


@cache
def anchors(path: Path) -> frozenset[str]:
    soup = parse(path)
    return frozenset(t["id"] for t in soup.find_all(id=True)) | frozenset(
        t["name"] for t in soup.find_all(attrs={"name": True}))


def broken_links(folder: Path) -> list[str]:
    """``'page: tag attr=value (why)'`` for every internal reference of the book's pages that
    does not resolve, and every resource they load from another site."""
    problems = []
    for page in sorted(folder.rglob("*.html")):
        name = page.relative_to(folder)
        if name.parts[0] == "_static":  # the themes' template fragments, not pages
            continue
        for tag in parse(page).find_all(True):
            for attr in ("href", "src"):
                value = tag.get(attr)
                if value is None or (tag.name, attr) not in FOLLOWED | LOADED:
                    continue
                where = f"{name}: <{tag.name} {attr}={value!r}>"
                url = urlsplit(value)
                if url.scheme in ("data", "mailto", "javascript"):
                    continue
                if url.scheme or url.netloc:
                    if (tag.name, attr) in LOADED and "preconnect" not in tag.get("rel", []):
                        problems.append(f"{where} (loads from another site)")
                    continue
                target = (page.parent / unquote(url.path)).resolve() if url.path else page
                if target.is_dir():
                    target = target / "index.html"
                if not target.is_relative_to(folder) or not target.is_file():
                    problems.append(f"{where} (no such file)")
                elif url.fragment and target.suffix == ".html" and \
                        unquote(url.fragment) not in anchors(target):
                    problems.append(f"{where} (no anchor #{url.fragment} in "
                                    f"{target.relative_to(folder)})")
    return problems


def test_internal_links_and_anchors_resolve(book):
    problems = broken_links(book)
    assert not problems, f"{len(problems)} broken links:\n" + "\n".join(problems[:50])


def test_the_check_sees_a_broken_link_and_an_external_script(tmp_path):
    (tmp_path / "index.html").write_text(
        '<p id="here"><a href="#here">ok</a> <a href="page.html#there">ok</a>'
        '<a href="https://example.org/">ok, followed on purpose</a></p>')
    (tmp_path / "page.html").write_text(
        '<h1 id="there">x</h1><a href="missing.html">bad</a> <a href="index.html#gone">bad</a>'
        '<script src="https://cdn.example.org/x.js"></script><img src="_static/none.png">')
    problems = broken_links(tmp_path)
    assert [p.split(" (")[1] for p in problems] == [
        "no such file)", "no anchor #gone in index.html)", "loads from another site)",
        "no such file)"], problems
