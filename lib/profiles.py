"""The run profiles of the book, as plain data.

Every chapter notebook has a ``parameters`` cell (for papermill) whose first entry is ``profile``;
every other parameter defaults to ``None``, meaning "take the profile's value". The notebook then
calls :func:`resolve`, which fills those values in from the table below and checks the names.

Profiles:

- ``quick``: tiny sizes, seconds per chapter. Used by CI (``make test``).
- ``default``: the rendered book on a laptop CPU (``make book``).
- ``paper``: the source papers' scale; a GPU is welcome.

The profile comes from, in order: the ``profile`` parameter, the ``BOOK_PROFILE`` environment
variable, then ``"default"``.

Example::

    >>> from lib.profiles import resolve
    >>> p = resolve("simulating_ct", "quick", image_size=96)
    >>> p.image_size, p.profile
    (96, 'quick')
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

PROFILE_NAMES = ("quick", "default", "paper")

#: Parameters every chapter has.
COMMON: dict[str, dict[str, Any]] = {
    "seed": {"quick": 0, "default": 0, "paper": 0},
    # "auto": a CUDA GPU when there is one, otherwise the CPU.
    "device": {"quick": "auto", "default": "auto", "paper": "auto"},
}

#: Per chapter: parameter -> {profile: value}.
CHAPTERS: dict[str, dict[str, dict[str, Any]]] = {
    "cnn_basics": {
        # A tiny CNN trained on CT patches: steps, patch side, training slices, patches.
        "train_steps": {"quick": 30, "default": 300, "paper": 2000},
        "patch_size": {"quick": 24, "default": 32, "paper": 48},
        "n_train_slices": {"quick": 2, "default": 8, "paper": 32},
        "n_patches": {"quick": 128, "default": 1024, "paper": 8192},
        # Hidden units per layer of the 2-D ReLU network whose regions are drawn.
        "relu_width": {"quick": 8, "default": 12, "paper": 16},
    },
    "simulating_ct": {
        # Phantom and reconstruction grid (pixels); the field of view stays PAPER's (lib.ct.protocol).
        "image_size": {"quick": 128, "default": 256, "paper": 512},
        "n_angles": {"quick": 180, "default": 360, "paper": 720},
        # Incident photons per ray for the noise-versus-dose law.
        "dose_levels": {
            "quick": [1.25e4, 2.5e4, 5e4, 1e5],
            "default": [6.25e3, 1.25e4, 2.5e4, 5e4, 1e5, 2e5],
            "paper": [3.125e3, 6.25e3, 1.25e4, 2.5e4, 5e4, 1e5, 2e5, 4e5],
        },
        # Noise realisations per dose level in the noise-law measurement.
        "noise_realizations": {"quick": 2, "default": 4, "paper": 16},
    },
    "training_denoisers": {
        # A Chen CNN trained live in the chapter (steps, training phantoms).
        "live_steps": {"quick": 20, "default": 200, "paper": 3000},
        "live_train_slices": {"quick": 4, "default": 16, "paper": 64},
        # Held-out test phantoms for the results table.
        "n_test": {"quick": 2, "default": 8, "paper": 32},
        # Noise realizations (of a water cylinder and of a test slab) for the noise power spectra.
        "nps_realizations": {"quick": 3, "default": 12, "paper": 64},
    },
    "counting_linear_regions": {
        # The network of the main figures, and the ROI around the lesion (pixels).
        "model": {"quick": "chen", "default": "chen", "paper": "redcnn"},
        "roi_size": {"quick": 40, "default": 48, "paper": 64},
        # Lesion contrast range walked (mm^-1); the paper's is 0.007 to 0.04.
        "contrast_start": {"quick": 0.007, "default": 0.007, "paper": 0.007},
        "contrast_end": {"quick": 0.0075, "default": 0.04, "paper": 0.04},
        # Increment of the sampled (paper-style) curves over the whole range; the paper used 2e-7.
        "sample_increment": {"quick": 1e-5, "default": 2e-5, "paper": 2e-7},
        # Width of the two zoom windows, sampled at the paper's increment 2e-7.
        "zoom_width": {"quick": 1e-5, "default": 2e-5, "paper": 2e-5},
        # The five-network table: ROI (pixels) and contrast range end.
        "table_roi_size": {"quick": 24, "default": 32, "paper": 64},
        "table_contrast_end": {"quick": 0.0071, "default": 0.0072, "paper": 0.04},
        # Sub-intervals walked together as one batch.
        "chunks": {"quick": 4, "default": 8, "paper": 16},
        # The paper's count on its network: random points whose region widths estimate the count
        # over the full range (lib.linearity.density), and the network they are taken on.
        "count_model": {"quick": "redcnn", "default": "redcnn", "paper": "redcnn"},
        "estimate_samples": {"quick": 4, "default": 16, "paper": 64},
        # Points of the same estimate on the chapter's network, checked against its exact walk.
        "validation_samples": {"quick": 64, "default": 48, "paper": 256},
    },
    "approximately_linear_regions": {
        "model": {"quick": "chen", "default": "chen", "paper": "redcnn"},
        "roi_size": {"quick": 32, "default": 64, "paper": 64},
        # The (contrast, background) grid: contrast 0.001 to 0.08, background 0 to 0.04 (mm^-1).
        "n_contrasts": {"quick": 8, "default": 27, "paper": 80},
        "n_backgrounds": {"quick": 6, "default": 21, "paper": 41},
        # Largest linearisation error (percent, see lib.linearity.approximate) within a region.
        "threshold": {"quick": 10.0, "default": 10.0, "paper": 10.0},
        # Thresholds of the regions-against-threshold curve, and the grid and ROI of that curve.
        "curve_thresholds": {"quick": [5.0, 20.0], "default": [2.0, 3.0, 5.0, 10.0, 20.0, 40.0],
                             "paper": [1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 40.0]},
        "curve_roi_size": {"quick": 48, "default": 48, "paper": 64},
        "curve_n_contrasts": {"quick": 4, "default": 10, "paper": 27},
        "curve_n_backgrounds": {"quick": 3, "default": 8, "paper": 21},
    },
    "how_it_denoises": {
        "model": {"quick": "chen", "default": "chen", "paper": "redcnn"},
        # ROI side: the dense Jacobian is (ROI^2) x (ROI^2) and its SVD costs O(ROI^6).
        "roi_size": {"quick": 40, "default": 48, "paper": 64},
        # The grid and threshold of the cover that defines the approximate regions.
        "n_contrasts": {"quick": 6, "default": 14, "paper": 27},
        "n_backgrounds": {"quick": 5, "default": 11, "paper": 21},
        "threshold": {"quick": 10.0, "default": 10.0, "paper": 10.0},
        # Lesion contrast of the noisy inputs (mm^-1), and scanner noise realisations.
        "lesion_contrast": {"quick": 0.02, "default": 0.02, "paper": 0.02},
        "n_realizations": {"quick": 8, "default": 100, "paper": 100},
        # Equation 7's singular-value threshold (the paper's 0.10).
        "singular_threshold": {"quick": 0.10, "default": 0.10, "paper": 0.10},
        # Leading singular values computed matrix-free as a check against the dense SVD.
        "randomized_rank": {"quick": 8, "default": 32, "paper": 64},
    },
    "invariances": {
        # Denoisers analysed, each at the layers where a cut holds (lib.invariance.ship.LAYERS).
        "networks": {"quick": ["chen"], "default": ["chen", "wganvgg", "cpce2d"],
                     "paper": ["chen", "wganvgg", "cpce2d"]},
        # Test patches (16 x 16) per network, cINN samples per patch (the paper: 250), scanner
        # noise realisations for the exact null-space prediction, bootstrap resamples.
        "n_patches": {"quick": 4, "default": 16, "paper": 64},
        "n_samples": {"quick": 32, "default": 64, "paper": 250},
        "n_noise": {"quick": 8, "default": 32, "paper": 100},
        "n_boot": {"quick": 200, "default": 2000, "paper": 10000},
    },
    "instability": {
        "model": {"quick": "chen", "default": "chen", "paper": "redcnn"},
        "roi_size": {"quick": 32, "default": 64, "paper": 64},
        # Root-mean-square perturbation sizes in HU.
        "norms_hu": {"quick": [3.0, 30.0], "default": [1.0, 3.0, 10.0, 30.0, 100.0],
                     "paper": [0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]},
        "ascent_steps": {"quick": 20, "default": 60, "paper": 300},
        "n_random": {"quick": 3, "default": 10, "paper": 50},
        "power_iterations": {"quick": 30, "default": 50, "paper": 300},
        "table_norm_hu": {"quick": 10.0, "default": 10.0, "paper": 10.0},
        "sinogram_steps": {"quick": 3, "default": 20, "paper": 200},
        # Scanner-noise realisations for the textured random control.
        "n_textured": {"quick": 1, "default": 10, "paper": 50},
        # Lesion erasure (false negatives): search sizes as fractions of the lesion's own norm.
        "erase_fractions": {"quick": [0.25, 1.0], "default": [0.1, 0.25, 0.5, 1.0],
                            "paper": [0.05, 0.1, 0.25, 0.5, 1.0]},
        "erase_steps": {"quick": 10, "default": 60, "paper": 300},
    },
}


def default_profile() -> str:
    """The profile named by ``$BOOK_PROFILE``, or ``"default"``; an unknown name is an error."""
    return _check_profile(os.environ.get("BOOK_PROFILE") or "default")


def parameter_names(chapter: str) -> list[str]:
    """The parameters a chapter accepts (besides ``profile``)."""
    return sorted({**COMMON, **_chapter_table(chapter)})


def resolve(chapter: str, profile: str | None = None, **overrides: Any) -> SimpleNamespace:
    """The parameters of ``chapter`` under ``profile``, with ``overrides`` that are not ``None``.

    Returns a namespace with one attribute per parameter plus ``profile``. Raises ``ValueError``
    that lists the valid names for an unknown chapter, profile or parameter.
    """
    profile = _check_profile(profile) if profile is not None else default_profile()
    table = {**COMMON, **_chapter_table(chapter)}
    unknown = sorted(set(overrides) - set(table))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for chapter {chapter!r}; "
            f"valid parameters: {', '.join(sorted(table))}"
        )
    values = {name: by_profile[profile] for name, by_profile in table.items()}
    values.update({k: _checked(chapter, k, v, table[k]) for k, v in overrides.items()
                   if v is not None})
    return SimpleNamespace(profile=profile, **values)


def _checked(chapter: str, name: str, value: Any, by_profile: dict[str, Any]) -> Any:
    """``value`` if it has the type of the profiles' values for ``name`` (an int where a float
    is expected becomes a float); counts that are positive in every profile must be positive."""
    defaults = list(by_profile.values())
    kinds = {bool if isinstance(d, bool) else type(d) for d in defaults if d is not None}
    problem = None
    if kinds == {float} and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kinds and not any(type(value) is kind for kind in kinds):
        problem = f"of type {' or '.join(sorted(k.__name__ for k in kinds))}"
    elif kinds == {int} and all(d >= 1 for d in defaults) and value < 1:
        problem = "a whole number of at least 1"
    if problem:
        raise ValueError(f"parameter {name}={value!r} of chapter {chapter!r} must be {problem} "
                         f"(the profiles use {by_profile})")
    return value


def _check_profile(profile: str) -> str:
    if profile not in PROFILE_NAMES:
        raise ValueError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILE_NAMES)} "
            "(set it with the `profile` parameter or the BOOK_PROFILE environment variable)"
        )
    return profile


def _chapter_table(chapter: str) -> dict[str, dict[str, Any]]:
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; chapters: {', '.join(sorted(CHAPTERS))}")
    return CHAPTERS[chapter]

