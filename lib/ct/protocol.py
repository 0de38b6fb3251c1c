"""The seed paper's scan protocol, in one place.

Every default that the paper fixes reads from :data:`PAPER`: the image grid the shipped denoisers
are trained on, the two doses (photons per ray), the lesion of the analysis chapters and the range
of contrasts and backgrounds it is studied over, and the slab of the 3-D network. Chapters and
:class:`lib.ct.datasets.DoseProtocol` read these values instead of repeating them.

The paper works on LIDC slices of about 0.7 mm per pixel; our phantom grid is coarser (see
``pixel_mm``), so a 9 mm lesion spans fewer pixels here than there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperProtocol:
    """Scan geometry, doses and lesion of the seed paper, as used throughout the book."""

    size: int = 512                      # pixels per side of a slice
    pixel_mm: float = 360 / 512          # pixel spacing (mm); field of view = size * pixel_mm
    n_angles: int = 360                  # parallel-beam views over 180 degrees
    normal_I0: float = 1e5               # normal dose, photons per ray
    low_I0: float = 1.25e4               # low dose (1/8 of normal), photons per ray
    lesion_diameter_mm: float = 9.0      # the lung lesion of the analysis chapters
    lesion_contrast: float = 0.007       # its contrast at the operating point (mm^-1)
    walk_end_contrast: float = 0.04      # region counting walks contrasts lesion_contrast..this
    grid_contrasts: tuple[float, float] = (0.001, 0.08)    # approximate regions: contrast range
    grid_backgrounds: tuple[float, float] = (0.0, 0.04)    # and uniform-background range (mm^-1)
    slab: int = 9                        # adjacent slices seen by the 3-D network (CPCE-3D)

    @property
    def field_of_view_mm(self) -> float:
        return self.size * self.pixel_mm


#: The protocol of the book (and the default of every function that simulates a scan).
PAPER = PaperProtocol()
