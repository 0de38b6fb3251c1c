"""Simulated low-dose CT and real DICOM input, in attenuation units (mu, mm^-1).

- :data:`PAPER` - the seed paper's protocol (grid, doses, lesion) - :mod:`lib.ct.protocol`
- :data:`MU_WATER`, :data:`HU_PER_MU`, :func:`hu_to_mu`, :func:`mu_to_hu`, display windows - :mod:`lib.ct.units`
- :func:`thorax_phantom`, :func:`thorax_slab` - a procedural thorax - :mod:`lib.ct.phantom`
- :func:`insert_lesion`, :func:`lung_lesion_site` - lesions - :mod:`lib.ct.lesion`
- :class:`Scanner` - projection, FBP and low-dose scans on ASTRA - :mod:`lib.ct.scanner`
- :func:`read_dicom` - a DICOM file or series as mu - :mod:`lib.ct.dicom`
- paired low-dose / normal-dose datasets and patches - :mod:`lib.ct.datasets`
- a lung lesion seen through a low-dose scan, for the analysis chapters - :mod:`lib.ct.scenes`
- the noise power spectrum - :mod:`lib.ct.noise`
- image noise against dose (the quantum-noise law) - :mod:`lib.ct.dose`
"""

from lib.ct.dicom import DicomError, read_dicom
from lib.ct.lesion import insert_lesion, lesion_profile, lung_lesion_site
from lib.ct.phantom import thorax_phantom, thorax_slab
from lib.ct.protocol import PAPER, PaperProtocol
from lib.ct.scanner import Scanner
from lib.ct.units import (HU_PER_MU, LUNG_WINDOW, MU_WATER, SOFT_TISSUE_WINDOW, TISSUE, hu_to_mu,
                          mu_to_hu, window)

__all__ = [
    "PAPER", "PaperProtocol", "MU_WATER", "HU_PER_MU", "TISSUE", "LUNG_WINDOW", "SOFT_TISSUE_WINDOW", "hu_to_mu", "mu_to_hu", "window",
    "thorax_phantom", "thorax_slab", "insert_lesion", "lesion_profile", "lung_lesion_site",
    "Scanner", "read_dicom", "DicomError",
]
