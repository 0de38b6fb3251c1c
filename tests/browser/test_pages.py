"""Every page of the built book in headless Chromium, with the network cut off.

A page fails on: a console error or uncaught exception; a request that failed, returned an error,
or tried to leave localhost (each is blocked and counted); Markdown left as text (a table's
``|---|`` row, ``$...$`` math) outside code; math that MathJax did not typeset; an image that did
not load; code, printed output or a result table that scrolls sideways or is cut; a ``hide-input`` toggle that does not
open; an animation whose buttons or slider do not change the frame; an embedded widget that was
not drawn or does not respond.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import built_book, html_pages, serve
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from lib import plotting

BOOK = built_book()
PAGES = [p.relative_to(BOOK).as_posix() for p in html_pages(BOOK)] if BOOK else []
RAW_TABLE = re.compile(r"\|\s*:?-{3,}:?\s*\|")
RAW_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)[^$\n]{1,200}(?<=\S)\$(?![\w$])")

# The reader's text of the article: without code, math already typeset, and scripts.
ARTICLE_TEXT = """() => {
  const article = (document.querySelector('article') || document.body).cloneNode(true);
  article.querySelectorAll('pre, code, script, style, mjx-container, .MathJax, details.hide')
    .forEach(e => e.remove());
  return article.innerText;
}"""

MATH = """async () => {
  const math = document.querySelectorAll('span.math, div.math').length;
  if (!math) return {math: 0};
  if (!window.MathJax || !MathJax.startup) return {math, loaded: false};
  await MathJax.startup.promise;
  return {math, loaded: true, typeset: document.querySelectorAll('mjx-container').length,
          errors: document.querySelectorAll('mjx-merror').length};
}"""

SIDEWAYS = """() => [...document.querySelectorAll('div.cell_input pre, div.cell_output pre')]
  .filter(pre => pre.scrollWidth > pre.clientWidth + 1).length
  + [...document.querySelectorAll('div.cell_output table')]
  .filter(t => t.scrollWidth > Math.min(t.clientWidth, t.parentElement.clientWidth) + 1).length"""

BROKEN_IMAGES = """() => [...document.querySelectorAll('article img')]
  .filter(img => !(img.complete && img.naturalWidth > 0))
  .map(img => (img.getAttribute('src') || '').slice(0, 80) || img.id)"""


def open_page(context, url: str, origin: str):
    """A new tab on ``url``; returns it and the list its failures are appended to."""
    page = context.new_page()
    failures: list[str] = []

    def route(r):
        target = r.request.url
        if target.startswith(origin) or urlsplit(target).scheme in ("data", "blob"):
            r.continue_()
        else:
            failures.append(f"blocked request to {target}")
            r.abort("blockedbyclient")

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and failures.append(
        f"console error: {m.text} ({m.location.get('url', '')})"))
    page.on("pageerror", lambda e: failures.append(f"uncaught exception: {e}"))
    page.on("requestfailed", lambda r: failures.append(
        f"request failed: {r.url} ({r.failure})") if r.url.startswith(origin) else None)
    page.on("response", lambda r: r.status >= 400 and failures.append(
        f"HTTP {r.status}: {r.url}"))
    page.goto(url, wait_until="load")
    return page, failures


def check_toggles(page) -> list[str]:
    """Open each hidden-input toggle; its code must become visible."""
    problems = []
    for k, details in enumerate(page.locator("details.hide.above-input").all()):
        details.locator("summary").click()
        if not details.evaluate("d => d.open") or not details.locator("pre").first.is_visible():
            problems.append(f"hide-input toggle {k} does not open")
    return problems


def check_animations(page) -> list[str]:
    """Each matplotlib animation: 'Next frame' and the slider must change the frame shown."""
    problems = []
    for k, anim in enumerate(page.locator("div.animation").all()):
        img, slider = anim.locator("img").first, anim.locator("input.anim-slider")
        frames = int(slider.get_attribute("max") or slider.evaluate("s => s.max"))
        shown = img.get_attribute("src")
        if frames < 1 or not shown:
            problems.append(f"animation {k}: {frames + 1} frames, image {shown!r:.40}")
            continue
        anim.locator("button[title='Next frame']").click()
        if img.get_attribute("src") == shown or slider.input_value() != "1":
            problems.append(f"animation {k}: 'Next frame' did not change the frame")
        slider.fill(str(frames))  # a range input takes its value and fires 'input'
        if img.get_attribute("src") in (shown, None):
            problems.append(f"animation {k}: the slider did not change the frame")
        anim.locator("button[title='First frame']").click()
        if img.get_attribute("src") != shown:
            problems.append(f"animation {k}: 'First frame' did not go back to the first frame")
    return problems


UNDRAWN_WIDGETS = """() => [...document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]')]
  .filter(s => {
    const area = s.previousElementSibling;
    return !(area && area.classList.contains('widget-subarea')
             && area.querySelector('.jupyter-widgets'));
  }).length"""


def check_widgets(page) -> list[str]:
    """Each embedded widget view must be drawn by the widget manager (which then inserts a
    ``widget-subarea`` before the view's script), and its controls must take input: a slider
    moves with the arrow keys, a number box and a dropdown take a new value."""
    views = page.locator("script[type='application/vnd.jupyter.widget-view+json']").count()
    if not views:
        return []
    try:
        page.wait_for_function(f"() => ({UNDRAWN_WIDGETS})() === 0", timeout=10_000)
    except PlaywrightTimeout:
        drawn = views - page.evaluate(UNDRAWN_WIDGETS)
        return [f"the widget manager drew {drawn} of the {views} widget views"]
    problems = []
    for k, box in enumerate(page.locator(".widget-subarea .widget-text input").all()):
        box.fill("7")
        box.press("Enter")
        if float(box.input_value()) != 7:
            problems.append(f"number box {k} did not take a new value")
    for k, select in enumerate(page.locator(".widget-subarea .widget-dropdown select").all()):
        values = [o.get_attribute("value") for o in select.locator("option").all()]
        if len(values) > 1:
            select.select_option(values[-1])
            if select.input_value() != values[-1]:
                problems.append(f"dropdown {k} did not take a new value")
    for k, slider in enumerate(page.locator(".widget-subarea .widget-slider").all()):
        readout, handle = slider.locator(".widget-readout"), slider.locator(".noUi-handle").first
        before = readout.inner_text()
        handle.press("ArrowRight")
        if readout.inner_text() == before:
            handle.press("ArrowLeft")
        if readout.inner_text() == before:
            problems.append(f"slider {k} did not move with the arrow keys")
    return problems


def page_problems(context, url: str, origin: str) -> list[str]:
    """Everything on the page at ``url`` that a reader would find broken (see the module doc)."""
    page, failures = open_page(context, url, origin)
    try:
        math = page.evaluate(MATH)
        if math["math"] and not math["loaded"]:
            failures.append(f"{math['math']} math elements, but MathJax did not load")
        elif math["math"] and (math["typeset"] < math["math"] or math["errors"]):
            failures.append(f"MathJax typeset {math['typeset']} of {math['math']} math "
                            f"elements, {math['errors']} with errors")
        text = page.evaluate(ARTICLE_TEXT)
        failures += [f"raw Markdown table row in the text: {m.group()!r}"
                     for m in RAW_TABLE.finditer(text)]
        failures += [f"untypeset $...$ math in the text: {m.group()!r}"
                     for m in RAW_MATH.finditer(text)]
        failures += [f"image did not load: {src}" for src in page.evaluate(BROKEN_IMAGES)]
        if wide := page.evaluate(SIDEWAYS):
            failures.append(f"{wide} code or output blocks or tables scroll sideways")
        failures += check_toggles(page) + check_animations(page) + check_widgets(page)
    finally:
        page.close()
    return failures


@pytest.mark.skipif(not PAGES, reason="BOOK_HTML is not set or the book has no pages")
@pytest.mark.parametrize("path", PAGES)
def test_page_reads_right_offline(path, book, server, chromium):
    failures = page_problems(chromium, server + path, server)
    assert not failures, f"{path}: {len(failures)} problems\n" + "\n".join(failures)


def test_the_check_sees_what_a_reader_would(book, chromium, tmp_path):
    """A page with one of each defect: each must be reported."""
    player = plotting.animate([np.zeros((4, 4)), np.ones((4, 4))], ["a", "b"], (0.0, 1.0)).data
    (tmp_path / "bad.html").write_text(f"""<html><head>
      <script src="https://cdn.example.org/lib.js"></script></head><body><article>
      <p>| a | b |\n|---|---|</p><p>the value $x^2$ left raw</p>
      <span class="math">\\(x\\)</span><img src="missing.png"><script>oops(</script>
      <details class="hide above-input"><summary>Show code</summary></details>
      <div class="cell_input"><pre>{"x" * 400}</pre></div>
      {player.replace(".next_frame()", ".pause_animation()")}
      <script type="application/vnd.jupyter.widget-view+json">{{}}</script>
      </article></body></html>""")
    with serve(tmp_path) as origin:
        found = "\n".join(page_problems(chromium, origin + "bad.html", origin))
    for expected in ["blocked request to https://cdn.example.org/lib.js",
                     "uncaught exception", "HTTP 404", "raw Markdown table row",
                     "untypeset $...$ math in the text: '$x^2$'", "MathJax did not load",
                     "image did not load", "scroll sideways", "toggle 0 does not open",
                     "'Next frame' did not change the frame", "drew 0 of the 1 widget views"]:
        assert expected in found, f"not reported: {expected}\n{found}"
