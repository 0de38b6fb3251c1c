"""Attenuation units: linear attenuation coefficients mu in mm^-1, and Hounsfield units.

All images in the book are mu maps in mm^-1 at an effective energy of about 70 keV.
HU and mu are related through water: ``HU = 1000 (mu - MU_WATER) / MU_WATER`` (air is -1000 HU,
mu = 0).
"""

from __future__ import annotations

import numpy as np
import torch

#: Linear attenuation of water at about 70 keV, in mm^-1 (NIST XCOM: 0.193 cm^2/g x 1 g/cm^3).
MU_WATER = 0.0193
#: HU per mm^-1: the scale of differences, noise levels and errors (no offset), ``1000 / MU_WATER``.
HU_PER_MU = 1000.0 / MU_WATER


def hu_to_mu(hu):
    """Hounsfield units to mu in mm^-1 (negative results, below air, are clipped to 0)."""
    mu = MU_WATER * (1.0 + hu / 1000.0)
    if isinstance(mu, torch.Tensor):
        return mu.clamp(min=0.0)
    if isinstance(mu, np.ndarray):
        return np.maximum(mu, 0.0)
    return max(float(mu), 0.0)


def mu_to_hu(mu):
    """mu in mm^-1 to Hounsfield units."""
    return 1000.0 * (mu - MU_WATER) / MU_WATER


def window(center_hu: float, width_hu: float) -> tuple[float, float]:
    """A display window given in HU as (low, high) in mm^-1, for ``imshow(vmin=, vmax=)``."""
    return hu_to_mu(center_hu - width_hu / 2), hu_to_mu(center_hu + width_hu / 2)


#: Display windows used throughout the book, as (low, high) in mm^-1.
LUNG_WINDOW = window(-600, 1500)
SOFT_TISSUE_WINDOW = window(40, 400)

#: Typical tissue values in mm^-1 used by the phantom.
TISSUE = {
    "air": 0.0,
    "lung": hu_to_mu(-850.0),
    "fat": hu_to_mu(-100.0),
    "mediastinum": hu_to_mu(-20.0),
    "muscle": hu_to_mu(50.0),
    "blood": hu_to_mu(45.0),
    "trabecular_bone": hu_to_mu(250.0),
    "cortical_bone": hu_to_mu(1000.0),
}


def rms_hu_to_norm(rms_hu: float, n_values: int) -> float:
    """The Euclidean norm (mm^-1) of ``n_values`` values whose root-mean-square is ``rms_hu`` HU.

    ``||r|| = sqrt(n) rms_hu / HU_PER_MU``: perturbation sizes stated per pixel, in HU.

    >>> round(rms_hu_to_norm(10.0, 100), 6)  # 10 HU RMS over 100 pixels
    0.00193
    """
    return rms_hu / HU_PER_MU * n_values ** 0.5


def norm_to_rms_hu(norm: float, n_values: int) -> float:
    """The root-mean-square in HU of ``n_values`` values of Euclidean norm ``norm`` (mm^-1), the
    inverse of :func:`rms_hu_to_norm`."""
    return norm / n_values ** 0.5 * HU_PER_MU
