"""A procedural thorax phantom in mm^-1, randomised by seed, continuous along the patient axis.

No thorax phantom generator exists on PyPI, so the book draws its own: a body outline with skin,
subcutaneous fat and a muscle wall; two lungs with a branching vessel tree and fine parenchymal
texture; heart with pericardial fat, descending aorta, vertebra with spinal canal, sternum and ribs.
Every structure is a smooth function of the axial position ``z_mm``, so adjacent slices of a slab
are continuous (the vessel tree is three-dimensional, ribs run obliquely, organs drift slowly).

Edges are anti-aliased with a one-pixel linear ramp of the signed distance to each boundary.
Values are in :data:`lib.ct.units.TISSUE`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lib.ct.protocol import PAPER
from lib.ct.units import TISSUE


def thorax_phantom(size: int = PAPER.size, pixel_mm: float = PAPER.pixel_mm, seed: int = 0,
                   z_mm: float = 0.0) -> torch.Tensor:
    """One axial thorax slice, a float32 tensor (size, size) of mu in mm^-1.

    Args:
        size: pixels per side; the field of view is ``size * pixel_mm`` mm.
        pixel_mm: pixel spacing in mm.
        seed: selects the patient (body shape, lungs, vessels, texture, bones).
        z_mm: axial position of the slice in mm; nearby positions give nearby slices.

    Example::

        >>> mu = thorax_phantom(128, 3.0, seed=1)
        >>> mu.shape, float(mu.min()) >= 0.0
        (torch.Size([128, 128]), True)
    """
    _check_grid(size, pixel_mm)
    _check_finite(z_mm=z_mm)
    return torch.from_numpy(_Thorax(seed).slice(size, pixel_mm, z_mm).astype(np.float32))


def thorax_slab(n_slices: int, size: int = PAPER.size, pixel_mm: float = PAPER.pixel_mm,
                slice_mm: float = PAPER.pixel_mm, seed: int = 0,
                z_center_mm: float = 0.0) -> torch.Tensor:
    """``n_slices`` adjacent slices (n_slices, size, size) spaced ``slice_mm``, centred on z."""
    _check_grid(size, pixel_mm)
    _check_finite(slice_mm=slice_mm, z_center_mm=z_center_mm)
    if isinstance(n_slices, bool) or int(n_slices) != n_slices or n_slices < 1:
        raise ValueError(f"n_slices must be a whole number of at least 1, got {n_slices!r}")
    thorax = _Thorax(seed)
    zs = z_center_mm + slice_mm * (np.arange(n_slices) - (n_slices - 1) / 2)
    return torch.from_numpy(np.stack([thorax.slice(size, pixel_mm, z) for z in zs]).astype(np.float32))


def _check_finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of mm, got {value!r}")


def _check_grid(size: int, pixel_mm: float) -> None:
    if isinstance(size, bool) or int(size) != size or size < 16:
        raise ValueError(f"size must be a whole number of at least 16 pixels, got {size!r}")
    _check_finite(pixel_mm=pixel_mm)
    fov = size * pixel_mm
    if not 250.0 <= fov <= 700.0:
        raise ValueError(
            f"the field of view size * pixel_mm = {fov:.0f} mm cannot hold a thorax; "
            "choose size and pixel_mm so that it lies between 250 and 700 mm "
            f"(lib.ct.PAPER: {PAPER.size * PAPER.pixel_mm:.0f} mm)"
        )


@dataclass
class _Segment:
    """A vessel: a 3-D tube from p0 to p1 (mm) of radius r (mm)."""

    p0: np.ndarray
    p1: np.ndarray
    r: float


class _Thorax:
    """The random geometry of one patient, drawn once from ``seed``; ``slice`` renders a z."""

    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        u = rng.uniform
        self.a, self.b = u(148, 172), u(102, 124)  # body semi-axes (mm), left-right and front-back
        self.body_harm = self._harmonics(rng, 0.025)
        self.skin, self.fat, self.muscle = u(1.5, 2.5), u(6, 22), u(8, 14)
        self.fat_harm = self._harmonics(rng, 0.35)
        self.z_scale = u(-0.0015, 0.0015)  # relative growth of the body per mm along z
        # Lungs: (centre x, centre y, semi-axis x, semi-axis y) as fractions of the body.
        self.lungs = [
            (u(-0.50, -0.44), u(-0.08, 0.0), u(0.33, 0.38), u(0.62, 0.70), self._harmonics(rng, 0.06)),
            (u(0.44, 0.50), u(-0.08, 0.0), u(0.29, 0.34), u(0.60, 0.68), self._harmonics(rng, 0.06)),
        ]
        self.heart = (u(0.08, 0.16), u(-0.30, -0.18), u(0.26, 0.31), u(0.34, 0.40), u(0.3, 0.6))
        self.heart_drift = u(-0.02, 0.02, size=2)  # heart centre drift per mm (mm/mm)
        self.aorta = (u(0.08, 0.14), u(0.38, 0.46), u(10, 13))
        self.spine_y, self.vertebra_r = u(0.56, 0.64), u(14, 18)
        self.ribs = [(side, u(-1.2, 1.3), u(4, 6), u(-0.004, 0.004))
                     for side in (-1, 1) for _ in range(int(rng.integers(4, 7)))]
        self.vessels = self._vessel_tree(rng)
        # Texture: random plane waves in 3-D (continuous in z), band 0.04-0.35 cycles/mm.
        k = rng.normal(size=(96, 3))
        k /= np.linalg.norm(k, axis=1, keepdims=True)
        self.wave_k = k * rng.uniform(0.04, 0.35, size=(96, 1)) * 2 * np.pi
        self.wave_phase = rng.uniform(0, 2 * np.pi, size=96)

    @staticmethod
    def _harmonics(rng, amplitude):
        """Random boundary wobble: amplitudes and phases of angular harmonics 2..5."""
        return amplitude * rng.uniform(0.2, 1.0, 4) / np.arange(2, 6), rng.uniform(0, 2 * np.pi, 4)

    def _vessel_tree(self, rng) -> list[_Segment]:
        segments = []
        for (cx, cy, ax, ay, _), side in zip(self.lungs, (-1, 1)):
            hilum = np.array([side * self.a * 0.22, self.b * (cy - 0.02), 0.0])
            self._branch(rng, segments, hilum, np.array([side * 1.0, rng.uniform(-0.6, 0.6), 0.0]),
                         length=30.0, radius=4.0, depth=6)
            for _ in range(int(rng.integers(50, 80))):  # small vessels crossing the slice
                p = np.array([self.a * (cx + rng.uniform(-ax, ax) * 0.9),
                              self.b * (cy + rng.uniform(-ay, ay) * 0.9), rng.uniform(-20, 20)])
                d = rng.normal(size=3)
                d[2] += 2.0 * np.sign(rng.normal())
                d *= rng.uniform(10, 30) / np.linalg.norm(d)
                segments.append(_Segment(p - d / 2, p + d / 2, rng.uniform(0.6, 1.8)))
        return segments

    def _branch(self, rng, segments, start, direction, length, radius, depth):
        direction = direction / np.linalg.norm(direction)
        end = start + direction * length
        segments.append(_Segment(start, end, radius))
        if depth == 0:
            return
        for turn in (-1, 1):
            angle = turn * rng.uniform(0.25, 0.6)
            c, s = np.cos(angle), np.sin(angle)
            new = np.array([c * direction[0] - s * direction[1], s * direction[0] + c * direction[1],
                            direction[2] + rng.uniform(-0.5, 0.5)])
            self._branch(rng, segments, end, new, length * rng.uniform(0.65, 0.85),
                         radius * rng.uniform(0.65, 0.78), depth - 1)

    # --- rendering -------------------------------------------------------------------------

    def slice(self, size: int, pixel_mm: float, z: float) -> np.ndarray:
        coords = (np.arange(size) - (size - 1) / 2) * pixel_mm
        y, x = np.meshgrid(coords, coords, indexing="ij")  # row 0 is anterior
        px = pixel_mm
        scale = 1.0 + self.z_scale * z
        a, b = self.a * scale, self.b * scale
        T = TISSUE
        img = np.zeros((size, size))

        def paint(coverage, value):
            nonlocal img
            img = img * (1 - coverage) + value * coverage

        depth = _depth(x, y, 0, 0, a, b, 0, self.body_harm)
        fat_t = self.fat * (1 + _wobble(np.arctan2(y / b, x / a), self.fat_harm))
        paint(_ramp(depth, px), T["muscle"])
        paint(_ramp(depth - self.skin, px), T["fat"])
        paint(_ramp(depth - self.skin - fat_t, px), T["muscle"])
        wall = self.skin + fat_t + self.muscle
        paint(_ramp(depth - wall, px), T["mediastinum"])
        soft = _ramp(depth - self.skin, px)
        img += 0.0004 * soft * self._texture(x, y, z, 0.5)

        for side, angle, r, drift in self.ribs:  # ribs in the muscle wall, drifting with z
            theta = angle + drift * z  # from the lateral direction; positive is posterior
            rim = np.array([side * np.cos(theta) * a, np.sin(theta) * b])
            fat_here = self.fat * (1 + float(_wobble(np.arctan2(rim[1] / b, rim[0] / a), self.fat_harm)))
            inset = self.skin + fat_here + self.muscle / 2
            center = rim * (1 - inset / np.hypot(*rim))
            dist = np.hypot(x - center[0], y - center[1])
            paint(_ramp(r - dist, px), T["cortical_bone"])
            paint(_ramp(r - 1.8 - dist, px), T["trabecular_bone"])

        lungs = np.zeros_like(img)
        for cx, cy, ax, ay, harm in self.lungs:
            lung_scale = 1 + 0.004 * np.clip(z, -40, 40)
            lungs = np.maximum(lungs, _ramp(_depth(x, y, cx * a, cy * b, ax * a * lung_scale,
                                                   ay * b * lung_scale, 0, harm), px))
        hx, hy, hax, hay, hrot = self.heart
        heart_c = (hx * a + self.heart_drift[0] * z, hy * b + self.heart_drift[1] * z)
        heart_depth = _depth(x, y, *heart_c, hax * a, hay * b, hrot, None)
        lungs *= 1 - _ramp(heart_depth + 4.0, px)  # lungs stop at the pericardial fat
        parenchyma = T["lung"] + 0.0009 * self._texture(x, y, z, 1.0)
        paint(lungs, parenchyma)
        paint(lungs * self._vessels(x, y, z, px), T["blood"])

        paint(_ramp(heart_depth + 3.0, px), T["fat"])
        paint(_ramp(heart_depth, px), T["blood"])
        ax_, ay_, ar = self.aorta
        paint(_ramp(ar - np.hypot(x - ax_ * a, y - ay_ * b), px), T["blood"])

        vy, vr = self.spine_y * b, self.vertebra_r
        paint(_ramp(vr - np.hypot(x, y - vy), px), T["cortical_bone"])
        paint(_ramp(vr - 2.5 - np.hypot(x, y - vy), px), T["trabecular_bone"])
        canal_y = vy + vr + 8.0
        paint(_ramp(12.0 - np.hypot(x, y - canal_y), px), T["cortical_bone"])
        paint(_ramp(7.5 - np.hypot(x, y - canal_y), px), T["muscle"])
        paint(_ramp(_depth(x, y, 0, canal_y + 17, 4.5, 9, 0, None), px), T["cortical_bone"])
        paint(_ramp(_depth(x, y, 0, -b * 0.93, 15, 6, 0, None), px), T["cortical_bone"])
        paint(_ramp(_depth(x, y, 0, -b * 0.93, 12, 3.5, 0, None), px), T["trabecular_bone"])
        return np.clip(img, 0.0, None)

    def _texture(self, x, y, z, weight):
        """Zero-mean, unit-std smooth random field sampled on the slice at height z; ``x`` and
        ``y`` are the slice's ``ij`` meshgrid (x varies along columns, y along rows).

        The field is a sum of plane waves cos(k_x x + k_y y + k_z z + phi). On the grid each wave
        splits as cos(a) cos(b) - sin(a) sin(b) with a = k_x x and b = k_y y + k_z z + phi, so the
        sum over waves is two (rows x waves) @ (waves x columns) products instead of a cosine per
        wave and pixel.
        """
        a = self.wave_k[:, 0, None] * x[0]                                    # (waves, columns)
        b = self.wave_k[:, 1, None] * y[:, 0] + (self.wave_k[:, 2] * z + self.wave_phase)[:, None]
        field = np.cos(b).T @ np.cos(a) - np.sin(b).T @ np.sin(a)
        return weight * field / np.sqrt(len(self.wave_phase) / 2)

    def _vessels(self, x, y, z, px):
        """Coverage in [0, 1] of the vessel tubes on the plane at height z."""
        coverage = np.zeros_like(x)
        x0, y0 = x[0, 0], y[0, 0]
        n = x.shape[0]
        for s in self.vessels:
            lo, hi = np.minimum(s.p0, s.p1) - s.r - px, np.maximum(s.p0, s.p1) + s.r + px
            if not lo[2] <= z <= hi[2]:
                continue
            c0, c1 = [int(np.clip(np.floor((v - x0) / px), 0, n)) for v in (lo[0], hi[0] + px)]
            r0, r1 = [int(np.clip(np.floor((v - y0) / px), 0, n)) for v in (lo[1], hi[1] + px)]
            if c1 <= c0 or r1 <= r0:
                continue
            xs, ys = x[r0:r1, c0:c1], y[r0:r1, c0:c1]
            d = s.p1 - s.p0
            t = ((xs - s.p0[0]) * d[0] + (ys - s.p0[1]) * d[1] + (z - s.p0[2]) * d[2]) / (d @ d)
            t = np.clip(t, 0, 1)
            dist = np.sqrt((xs - s.p0[0] - t * d[0]) ** 2 + (ys - s.p0[1] - t * d[1]) ** 2
                           + (z - s.p0[2] - t * d[2]) ** 2)
            coverage[r0:r1, c0:c1] = np.maximum(coverage[r0:r1, c0:c1], _ramp(s.r - dist, px))
        return coverage


def _wobble(theta, harmonics):
    amp, phase = harmonics
    k = np.arange(2, 2 + len(amp))
    return (amp * np.cos(k * np.asarray(theta)[..., None] + phase)).sum(-1)


def _depth(x, y, cx, cy, ax, ay, rotation, harmonics):
    """Approximate signed distance (mm) inside a wobbly ellipse: positive inside, 0 on the edge."""
    c, s = np.cos(rotation), np.sin(rotation)
    u, v = c * (x - cx) + s * (y - cy), -s * (x - cx) + c * (y - cy)
    theta = np.arctan2(v / ay, u / ax)
    radius = 1.0 + (_wobble(theta, harmonics) if harmonics is not None else 0.0)
    rho = np.hypot(u / ax, v / ay)
    # distance along the ray, in mm, at the ellipse's local radius
    local = np.hypot(ax * np.cos(theta), ay * np.sin(theta))
    return (radius - rho) * local


def _ramp(signed_distance, px):
    """Pixel coverage from a signed distance: a linear ramp one pixel wide centred on the edge."""
    return np.clip(signed_distance / px + 0.5, 0.0, 1.0)
