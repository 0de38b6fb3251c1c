"""Figures shared by the chapters: the book's style, mu images with a stated window and colour
bar, signed maps, zoom boxes, maps over the (contrast, background) plane, and animations.

Every image is shown with its display window and a colour bar in mm^-1 whose label gives the
window in HU, so that a reader can read values off any figure. Signed quantities (Jacobian rows,
singular vectors, perturbations, differences) use one diverging map centred on zero.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation

from lib.ct.units import mu_to_hu


#: The book's matplotlib settings, applied once per chapter by :func:`use_book_style`.
BOOK_STYLE = {
    "figure.constrained_layout.use": True,
    "figure.dpi": 100,
    "image.interpolation": "nearest",
    "axes.titlesize": "medium",
    "axes.spines.top": False,
    "axes.spines.right": False,
}
#: The diverging colour map of every signed image.
SIGNED_CMAP = "RdBu_r"


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` to matplotlib (call once, in a chapter's set-up cell)."""
    plt.rcParams.update(BOOK_STYLE)


def _numpy(image) -> np.ndarray:
    return image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)


def show_mu(ax, image, window: tuple[float, float], title: str = "", colorbar: bool = True,
            extent_mm: float | None = None):
    """``imshow`` of a mu image (mm^-1) in ``window`` with a colour bar in mm^-1 and HU."""
    data = _numpy(image)
    extent = None if extent_mm is None else (0, extent_mm, extent_mm, 0)
    im = ax.imshow(data, cmap="gray", vmin=window[0], vmax=window[1], extent=extent)
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    if colorbar:
        bar = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        low, high = (round(float(mu_to_hu(v))) for v in window)
        bar.set_label(f"mu (mm$^{{-1}}$); window {low} to {high} HU")
    return im


def show_signed(ax, image, limit: float | None = None, title: str = "", colorbar: bool = False,
                label: str = "mm$^{-1}$"):
    """``imshow`` of a signed map on :data:`SIGNED_CMAP`, symmetric about zero.

    ``limit`` is the value drawn at full colour (default: the largest magnitude in the image); the
    colour bar, if asked for, carries ``label``.
    """
    data = _numpy(image)
    if limit is None:
        limit = float(np.abs(data).max()) or 1.0
    im = ax.imshow(data, cmap=SIGNED_CMAP, vmin=-limit, vmax=limit)
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    if colorbar:
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    return im


def show_feature_map(ax, image, title: str = "", quantile: float = 0.995):
    """``imshow`` of a feature map in grey, clipped at its ``quantile`` of |value|: symmetric about
    zero when the map has negative values, from zero otherwise."""
    data = _numpy(image)
    limit = float(np.quantile(np.abs(data), quantile)) or 1.0
    im = ax.imshow(data, cmap="gray", vmin=-limit if data.min() < 0 else 0.0, vmax=limit)
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    return im


def show_polygons(ax, polygons: Sequence, values=None, box: Sequence[float] | None = None,
                  edgecolor: str = "k"):
    """Convex polygons (each (k, 2) vertices), one ``tab20`` colour each, or coloured by
    ``values`` (one per polygon) on ``viridis``; ``box`` = (x0, x1, y0, y1) sets the axes."""
    from matplotlib.collections import PolyCollection

    shapes = [_numpy(p) for p in polygons]
    if values is None:
        patches = PolyCollection(shapes, facecolors=plt.get_cmap("tab20")(np.arange(len(shapes)) % 20),
                                 edgecolors=edgecolor, linewidths=0.3)
    else:
        patches = PolyCollection(shapes, array=_numpy(values), cmap="viridis", edgecolors=edgecolor,
                                 linewidths=0.2)
    ax.add_collection(patches)
    if box is not None:
        ax.set(xlim=box[:2], ylim=box[2:], aspect="equal")
    return patches


def zoom_window(center_px: Sequence[int], half_px: int, shape: Sequence[int]) -> tuple[slice, slice]:
    """Rows and columns of a square of side ``2 half_px`` around ``center_px``, moved inside ``shape``.

    >>> zoom_window((2, 60), 8, (64, 64))
    (slice(0, 16, None), slice(48, 64, None))
    """
    if 2 * half_px > min(shape[-2:]):
        raise ValueError(f"a zoom of {2 * half_px} px does not fit an image of {tuple(shape)}")
    starts = (min(max(int(c) - half_px, 0), n - 2 * half_px) for c, n in zip(center_px, shape[-2:]))
    return tuple(slice(s, s + 2 * half_px) for s in starts)


def mark_zoom(ax, zoom: tuple[slice, slice], color: str = "tab:red") -> None:
    """Outline the zoom window ``zoom`` (rows, cols) on an image axis."""
    rows, cols = zoom
    ax.add_patch(plt.Rectangle((cols.start - 0.5, rows.start - 0.5), cols.stop - cols.start,
                               rows.stop - rows.start, fill=False, color=color, lw=0.8))


def show_plane(ax, values, contrasts, backgrounds, threshold: float | None = None,
               points: Sequence[tuple[float, float]] = (), labels: Sequence[str] = (),
               label_color: str = "w", **imshow):
    """A map over the (lesion contrast, background) plane, contrast up and background across.

    ``values`` is (len(contrasts), len(backgrounds)), e.g. linearisation errors
    (:mod:`lib.linearity.approximate`); ``threshold`` draws that level as a cyan contour;
    ``points`` (contrast, background) are drawn as stars with ``labels``; ``imshow`` passes on
    (``cmap``, ``norm``, ...).
    """
    data, c, b = (_numpy(v) for v in (values, contrasts, backgrounds))
    im = ax.imshow(data, origin="lower", aspect="auto", extent=(b[0], b[-1], c[0], c[-1]),
                   **imshow)
    if threshold is not None:
        ax.contour(b, c, data, levels=[threshold], colors="cyan")
    for k, (c0, b0) in enumerate(points):
        ax.plot(b0, c0, "w*", ms=12, mec="k")
        if k < len(labels):
            ax.annotate(labels[k], (b0, c0), color=label_color, xytext=(4, 4),
                        textcoords="offset points")
    ax.set(xlabel="background b (mm$^{-1}$)", ylabel="lesion contrast c (mm$^{-1}$)")
    return im


# matplotlib's player draws its buttons with Font Awesome 4 icons from a CDN; offline they are
# blank. Plain characters instead, by the icon each button names.
_BUTTON_TEXT = {
    "fa-minus": "&minus;", "fa-fast-backward": "|&#9664;&#9664;", "fa-step-backward": "|&#9664;",
    "fa-play fa-flip-horizontal": "&#9664;", "fa-pause": "&#10074;&#10074;", "fa-play": "&#9654;",
    "fa-step-forward": "&#9654;|", "fa-fast-forward": "&#9654;&#9654;|", "fa-plus": "+",
}
_ICON = re.compile(r'<i class="fa ([a-z -]+)"></i>')
_CDN_STYLE = re.compile(r'<link rel="stylesheet"\s+href="https?://[^"]*"\s*/?>')


def jshtml(anim: animation.Animation):
    """A matplotlib animation as self-contained HTML: frames, slider and buttons, no downloads.

    The player is ``anim.to_jshtml()`` without its stylesheet link to a CDN, and with the button
    icons written as characters, so it works on a static page with the network off.
    """
    from IPython.display import HTML

    html, n_links = _CDN_STYLE.subn("", anim.to_jshtml())
    icons = _ICON.findall(html)
    if n_links != 1 or sorted(icons) != sorted(_BUTTON_TEXT):
        raise RuntimeError("matplotlib's to_jshtml() player changed: found "
                           f"{n_links} stylesheet links and the icons {icons}, expected 1 link "
                           f"and {list(_BUTTON_TEXT)}; update lib.plotting.jshtml for it")
    html = _ICON.sub(lambda m: _BUTTON_TEXT[m.group(1)], html)
    return HTML(html)


def animate(frames: Sequence, titles: Sequence[str], window: tuple[float, float],
            interval_ms: int = 700, size: float = 4.0):
    """An animation over images, as HTML with play controls (works on a static page, offline)."""
    fig, ax = plt.subplots(figsize=(size, size))
    im = show_mu(ax, frames[0], window, titles[0], colorbar=False)

    def update(k):
        im.set_data(_numpy(frames[k]))
        ax.set_title(titles[k])
        return (im,)

    return animate_figure(fig, update, len(frames), interval_ms)


def animate_figure(fig, draw, n_frames: int, interval_ms: int = 900):
    """Frames of any figure as HTML with a slider and play controls (works on a static page).

    ``draw(k)`` redraws ``fig`` for frame ``k`` (update images, titles, lines). The figure is
    closed afterwards, so the cell shows the animation only.
    """
    anim = animation.FuncAnimation(fig, draw, frames=n_frames, interval=interval_ms)
    html = jshtml(anim)
    plt.close(fig)
    return html
