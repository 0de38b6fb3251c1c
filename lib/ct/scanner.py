"""A parallel-beam CT scanner on the ASTRA toolbox, differentiable through torch autograd.

Geometry: an image of ``size x size`` pixels of ``pixel_mm`` centred on the rotation axis,
``n_angles`` views over [0, pi), and a flat detector of ``n_detectors`` bins of ``detector_mm``.
Because ASTRA is given the geometry in mm, :meth:`Scanner.project` returns line integrals
``p = integral mu dl`` (dimensionless) of a mu image in mm^-1.

Physics of :meth:`Scanner.scan`:

.. math::

    N \\sim \\mathrm{Poisson}(I_0 e^{-p}) + \\mathcal{N}(0, \\sigma_e^2), \\qquad
    \\hat p = -\\log\\big(\\max(N, N_{min}) / I_0\\big), \\qquad
    \\hat\\mu = \\mathrm{FBP}(\\hat p).

FBP is ``(pi / n_angles) (detector_mm / pixel_mm^2) A^T (h * p)``: the ramp kernel ``h`` of Kak and
Slaney (sampled in space, so that the DC term is right), optionally with a Hann window, applied
with zero padding in torch; ``A^T`` is ASTRA's back-projector, the exact adjoint of its forward
projector. :meth:`project` and :meth:`backproject` are an autograd pair (each one's gradient is
the other), so gradients flow through :meth:`fbp` and :meth:`project` to the image.

A ``window`` (rows, cols) of the image grid makes :meth:`backproject`, :meth:`fbp` and
:meth:`scan` reconstruct only those pixels: the back-projector then walks each ray over the window
alone (the back-projection of a 64-pixel ROI of a 512 grid is about 20x faster than the whole
slice's) and gives what the whole image has there, to float32 rounding.

ASTRA's CPU projectors are used for tensors on the CPU, its CUDA projectors for tensors on a GPU
(when ASTRA was built with CUDA and sees a GPU).
"""

from __future__ import annotations

import math

import astra
import numpy as np
import torch

from lib.ct.protocol import PAPER

FILTERS = ("ramp", "hann")

#: Rows and columns of the image grid, ``(slice(r0, r1), slice(c0, c1))``.
Window = tuple[slice, slice]
_KEPT_WINDOWS = 8  # windowed projectors a Scanner keeps


class Scanner:
    """Parallel-beam projection, FBP and low-dose simulation for (H, W) or (B, H, W) mu images.

    Args:
        size: image pixels per side.
        pixel_mm: image pixel spacing in mm.
        n_angles: views over 180 degrees.
        n_detectors: detector bins (default: enough to cover the image diagonal).
        detector_mm: bin width in mm (default: ``pixel_mm``).
        filter: default FBP filter, ``"ramp"`` or ``"hann"``.

    Example::

        >>> from lib.ct import Scanner, thorax_phantom
        >>> scanner = Scanner(size=128, pixel_mm=3.0, n_angles=180)
        >>> low_dose = scanner.scan(thorax_phantom(128, 3.0), I0=1.25e4, seed=0)
        >>> low_dose.shape
        torch.Size([128, 128])
    """

    def __init__(self, size: int = PAPER.size, pixel_mm: float = PAPER.pixel_mm,
                 n_angles: int = PAPER.n_angles, n_detectors: int | None = None,
                 detector_mm: float | None = None, filter: str = "ramp"):
        _check_count("size", size, 8)
        _check_count("n_angles", n_angles, 1)
        if n_detectors is not None:
            _check_count("n_detectors", n_detectors, 1)
        _check_positive("pixel_mm", pixel_mm)
        if detector_mm is not None:
            _check_positive("detector_mm", detector_mm)
        _check_filter(filter)
        self.size, self.pixel_mm, self.n_angles = int(size), float(pixel_mm), int(n_angles)
        self.detector_mm = float(detector_mm or pixel_mm)
        diagonal = self.size * self.pixel_mm * math.sqrt(2) / self.detector_mm
        self.n_detectors = int(n_detectors or math.ceil(diagonal) + 2)
        self.filter = filter
        self.angles = np.linspace(0, np.pi, self.n_angles, endpoint=False)
        half = self.size * self.pixel_mm / 2
        self._vol_geom = astra.create_vol_geom(self.size, self.size, -half, half, -half, half)
        self._proj_geom = astra.create_proj_geom("parallel", self.detector_mm, self.n_detectors,
                                                 self.angles)
        self._projectors: dict[tuple, int] = {}
        self._filters: dict[tuple, torch.Tensor] = {}

    def __repr__(self) -> str:
        return (f"Scanner(size={self.size}, pixel_mm={self.pixel_mm}, n_angles={self.n_angles}, "
                f"n_detectors={self.n_detectors}, detector_mm={self.detector_mm}, "
                f"filter={self.filter!r})")

    def __del__(self):
        for pid in getattr(self, "_projectors", {}).values():
            astra.projector.delete(pid)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        return self.n_angles, self.n_detectors

    # --- linear operators --------------------------------------------------------------------

    def project(self, mu: torch.Tensor) -> torch.Tensor:
        """Line integrals A mu: (..., H, W) in mm^-1 -> (..., n_angles, n_detectors)."""
        self._check_image(mu)
        return _Project.apply(mu, self)

    def backproject(self, sinogram: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        """The adjoint A^T: (..., n_angles, n_detectors) -> (..., H, W), or the pixels of
        ``window`` (rows, cols) alone."""
        self._check_sinogram(sinogram)
        return _Backproject.apply(sinogram, self, self._checked_window(window))

    def filter_sinogram(self, sinogram: torch.Tensor, filter: str | None = None) -> torch.Tensor:
        """Convolve each view with the ramp kernel (times a window); units become mm^-2."""
        self._check_sinogram(sinogram)
        kernel = self._frequency_response(filter or self.filter, sinogram.device, sinogram.dtype)
        padded = kernel.shape[-1] * 2 - 2
        spectrum = torch.fft.rfft(sinogram, n=padded, dim=-1) * kernel
        return torch.fft.irfft(spectrum, n=padded, dim=-1)[..., : self.n_detectors]

    def fbp(self, sinogram: torch.Tensor, filter: str | None = None,
            window: Window | None = None) -> torch.Tensor:
        """Filtered back-projection of line integrals to a mu image in mm^-1 (or to the pixels of
        ``window`` alone)."""
        filtered = self.filter_sinogram(sinogram, filter)
        scale = math.pi / self.n_angles * self.detector_mm / self.pixel_mm ** 2
        return self.backproject(filtered, window) * scale

    # --- measurement -------------------------------------------------------------------------

    def counts(self, sinogram: torch.Tensor, I0: float, seed: int | None = None,
               electronic_noise: float = 0.0) -> torch.Tensor:
        """Detected photons per ray: Poisson(I0 exp(-p)), plus Gaussian electronic noise (std)."""
        _check_positive("I0 (incident photons per ray)", I0)
        if not (math.isfinite(electronic_noise) and electronic_noise >= 0):
            raise ValueError(f"electronic_noise (a standard deviation in counts) must be finite "
                             f"and >= 0, got {electronic_noise}")
        generator = None
        if seed is not None:
            generator = torch.Generator(device=sinogram.device).manual_seed(int(seed))
        expected = I0 * torch.exp(-sinogram.detach().double())
        counts = torch.poisson(expected, generator=generator)
        if electronic_noise > 0:
            counts = counts + electronic_noise * torch.randn(
                counts.shape, generator=generator, device=counts.device, dtype=counts.dtype)
        return counts.to(sinogram.dtype)

    @staticmethod
    def line_integrals(counts: torch.Tensor, I0: float, min_counts: float = 1.0) -> torch.Tensor:
        """The safe log: -log(max(N, min_counts) / I0)."""
        _check_positive("min_counts", min_counts)
        return -torch.log(counts.clamp(min=min_counts) / I0)

    def scan(self, mu: torch.Tensor, I0: float, seed: int | None = None,
             electronic_noise: float = 0.0, min_counts: float = 1.0,
             filter: str | None = None, window: Window | None = None) -> torch.Tensor:
        """Simulate a scan at ``I0`` photons per ray and reconstruct it with FBP (mm^-1).

        ``seed`` makes the noise reproducible (one generator for the whole batch). ``mu`` must be
        a finite, non-negative attenuation map (nothing attenuates less than vacuum). With
        ``window`` (rows, cols), only those pixels are reconstructed.
        """
        self._check_image(mu)
        if not torch.isfinite(mu).all() or (mu < 0).any():
            raise ValueError(f"scan needs a finite mu >= 0 (mm^-1); got min {float(mu.min()):.4g}, "
                             f"{int((~torch.isfinite(mu)).sum())} NaN/inf pixels; clamp a "
                             "reconstruction with mu.clamp(min=0) before scanning it")
        counts = self.counts(self.project(mu), I0, seed, electronic_noise)
        return self.fbp(self.line_integrals(counts, I0, min_counts), filter, window)

    # --- internals ---------------------------------------------------------------------------

    def _check_image(self, mu: torch.Tensor) -> None:
        if not isinstance(mu, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor image, got {type(mu).__name__}")
        if mu.dim() < 2 or tuple(mu.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"this scanner takes (H, W) or (B, H, W) images of {self.size}x"
                             f"{self.size} pixels, got shape {tuple(mu.shape)}; resample the "
                             "image or build Scanner(size=...) to match")

    def _check_sinogram(self, sinogram: torch.Tensor) -> None:
        if sinogram.dim() < 2 or tuple(sinogram.shape[-2:]) != self.sinogram_shape:
            raise ValueError(f"expected sinograms of shape (..., {self.n_angles}, "
                             f"{self.n_detectors}), got {tuple(sinogram.shape)}")

    def _frequency_response(self, filter: str, device, dtype) -> torch.Tensor:
        _check_filter(filter)
        key = (filter, str(device), dtype)
        if key not in self._filters:
            padded = 1 << (2 * self.n_detectors - 1).bit_length()
            n = np.fft.fftfreq(padded, d=1.0 / padded).round().astype(int)
            d = self.detector_mm
            kernel = np.zeros(padded)
            kernel[n == 0] = 1 / (4 * d * d)
            odd = n % 2 == 1
            kernel[odd] = -1 / (np.pi * n[odd] * d) ** 2
            response = np.real(np.fft.rfft(kernel)) * d  # the convolution sum's d s
            if filter == "hann":
                f = np.fft.rfftfreq(padded)  # cycles per bin, Nyquist at 0.5
                response *= 0.5 * (1 + np.cos(2 * np.pi * f))
            self._filters[key] = torch.as_tensor(response, dtype=dtype, device=device)
        return self._filters[key]

    def _checked_window(self, window: Window | None) -> tuple[tuple[int, int], ...] | None:
        """``window`` as ((row0, row1), (col0, col1)); a clear error unless it is two slices
        with unit step inside the image."""
        if window is None:
            return None
        problem = f"window must be (rows, cols), two slices inside the {self.size}x{self.size} image"
        if not (isinstance(window, tuple) and len(window) == 2
                and all(isinstance(w, slice) for w in window)):
            raise ValueError(f"{problem}, got {window!r}")
        bounds = []
        for w in window:
            if w.step not in (None, 1) or w.start is None or w.stop is None:
                raise ValueError(f"{problem} with explicit start and stop and no step, got {window!r}")
            if not 0 <= w.start < w.stop <= self.size:
                raise ValueError(f"{problem}, non-empty, got {window!r}")
            bounds.append((int(w.start), int(w.stop)))
        return tuple(bounds)

    def _projector(self, device: torch.device, window: tuple | None = None) -> int:
        """ASTRA's projector for ``device`` and ``window``; the last few windows' are kept."""
        kind = "cuda" if device.type == "cuda" and astra.use_cuda() else "linear"
        if (kind, window) not in self._projectors:
            windowed = [key for key in self._projectors if key[1] is not None]
            if len(windowed) >= _KEPT_WINDOWS:  # a moving ROI must not pile up projectors
                astra.projector.delete(self._projectors.pop(windowed[0]))
            geometry = self._vol_geom
            if window is not None:  # the same pixels, a smaller grid: row 0 is the top (max y)
                (r0, r1), (c0, c1) = window
                half, px = self.size * self.pixel_mm / 2, self.pixel_mm
                geometry = astra.create_vol_geom(r1 - r0, c1 - c0, -half + c0 * px, -half + c1 * px,
                                                 half - r1 * px, half - r0 * px)
            self._projectors[kind, window] = astra.create_projector(kind, self._proj_geom, geometry)
        return self._projectors[kind, window]

    def _apply(self, x: torch.Tensor, adjoint: bool, window: tuple | None = None) -> torch.Tensor:
        """ASTRA forward (or back) projection of every image (or sinogram) in a batch; with
        ``window`` the images are that window of the grid."""
        pid = self._projector(x.device, window)
        image_shape = ((self.size, self.size) if window is None
                       else tuple(stop - start for start, stop in window))
        out_shape = image_shape if adjoint else self.sinogram_shape
        flat = x.detach().reshape(-1, *x.shape[-2:]).to("cpu", torch.float32).numpy()
        out = np.empty((len(flat), *out_shape), dtype=np.float32)
        for i, item in enumerate(flat):
            create = astra.create_backprojection if adjoint else astra.create_sino
            data_id, out[i] = create(np.ascontiguousarray(item), pid)
            astra.data2d.delete(data_id)
        return torch.from_numpy(out).reshape(*x.shape[:-2], *out_shape).to(x.device, x.dtype)


def _check_count(name: str, value, least: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")


def _check_positive(name: str, value) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


def _check_filter(filter: str) -> None:
    if filter not in FILTERS:
        raise ValueError(f"unknown FBP filter {filter!r}; choose one of {', '.join(FILTERS)}")


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mu, scanner):
        ctx.scanner = scanner
        return scanner._apply(mu, adjoint=False)

    @staticmethod
    def backward(ctx, grad):
        return ctx.scanner._apply(grad, adjoint=True), None


class _Backproject(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sinogram, scanner, window):
        ctx.scanner, ctx.window = scanner, window
        return scanner._apply(sinogram, adjoint=True, window=window)

    @staticmethod
    def backward(ctx, grad):
        return ctx.scanner._apply(grad, adjoint=False, window=ctx.window), None, None
