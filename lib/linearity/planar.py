"""The exact linear regions of a small ReLU network with a 2-D input, as polygons.

Start from the input box, a convex polygon on which the first layer's pre-activations are affine
in the input. Each unit's zero set is a straight line there, so cutting every polygon along the
lines of one layer's units leaves pieces on which that layer's activation pattern is fixed, and on
each piece the next layer's pre-activations are again affine. Layer by layer this partitions the
box into convex polygons, one per activation pattern met: the network's linear regions inside the
box, with the affine map ``f(x) = A x + c`` the network equals on each. No grid is involved; the
only rounding is float64 arithmetic at the cuts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PlanarRegion:
    """A convex polygon (vertices (k, 2), counter-clockwise) and the network's map on it."""

    vertices: torch.Tensor
    pattern: torch.Tensor  # one bool per ReLU unit, layer after layer
    A: torch.Tensor        # (outputs, 2)
    c: torch.Tensor        # (outputs,)

    @property
    def area(self) -> float:
        return _area(self.vertices)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """``A x + c`` for points (N, 2)."""
        return points @ self.A.T + self.c


def _cut(polygon: torch.Tensor, w: torch.Tensor, b: float, min_area: float):
    """Split a convex polygon by the line w.x + b = 0 into its (negative, positive) parts."""
    values = polygon @ w + b
    sides = []
    for sign in (-1.0, 1.0):
        points = []
        for i in range(len(polygon)):
            p, q = polygon[i], polygon[(i + 1) % len(polygon)]
            vp, vq = sign * values[i], sign * values[(i + 1) % len(polygon)]
            if vp >= 0:
                points.append(p)
            if (vp > 0 > vq) or (vp < 0 < vq):
                points.append(p + (vp / (vp - vq)) * (q - p))
        piece = torch.stack(points) if len(points) >= 3 else None
        sides.append(piece if piece is not None and _area(piece) > min_area else None)
    return sides


def _area(vertices: torch.Tensor) -> float:
    """Shoelace formula: the area of a polygon with counter-clockwise vertices."""
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * float((x * y.roll(-1) - x.roll(-1) * y).sum())


def planar_regions(network: nn.Sequential, box: tuple[float, float, float, float],
                   min_area: float = 1e-12) -> list[PlanarRegion]:
    """Every linear region of ``network`` inside ``box`` = (x_min, x_max, y_min, y_max).

    ``network`` is an ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU`` layers taking 2 inputs.
    Pieces of area at most ``min_area`` (slivers from lines through a vertex) are dropped.
    """
    layers = list(network)
    if not layers or not isinstance(layers[0], nn.Linear) or layers[0].in_features != 2:
        raise ValueError("planar_regions needs an nn.Sequential of nn.Linear and nn.ReLU layers "
                         "whose first layer takes 2 inputs")
    for layer in layers:
        if not isinstance(layer, (nn.Linear, nn.ReLU)):
            raise ValueError(f"planar_regions handles nn.Linear and nn.ReLU only, got "
                             f"{type(layer).__name__}")
    x0, x1, y0, y1 = box
    square = torch.tensor([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=torch.float64)
    # each piece: (polygon, A, c, pattern so far); the current layer's output is A x + c
    pieces = [(square, torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
               torch.zeros(0, dtype=torch.bool))]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            W, b = layer.weight.detach().double(), layer.bias.detach().double()
            pieces = [(poly, W @ A, W @ c + b, pat) for poly, A, c, pat in pieces]
            continue
        cut = []
        for poly, A, c, pat in pieces:
            parts = [(poly, torch.zeros(0, dtype=torch.bool))]
            for j in range(A.shape[0]):
                parts = [(piece, torch.cat([signs, torch.tensor([positive])]))
                         for part, signs in parts
                         for positive, piece in zip((False, True), _cut(part, A[j], float(c[j]), min_area))
                         if piece is not None]
            for part, signs in parts:
                mask = signs.double()
                cut.append((part, A * mask[:, None], c * mask, torch.cat([pat, signs])))
        pieces = cut
    return [PlanarRegion(poly, pat, A, c) for poly, A, c, pat in pieces]


def region_index(regions: list[PlanarRegion], points: torch.Tensor) -> torch.Tensor:
    """For points (N, 2), the index in ``regions`` of the polygon that contains each, -1 for none.

    A point is inside a counter-clockwise convex polygon when it lies left of (or on) every edge:
    ``cross(v_{i+1} - v_i, x - v_i) >= 0`` for all i. A point on a shared edge gets the later index.
    """
    points = points.to(torch.float64)
    owner = torch.full((len(points),), -1, dtype=torch.long)
    for k, region in enumerate(regions):
        v = region.vertices
        edge = v.roll(-1, 0) - v
        rel = points[:, None, :] - v[None]
        cross = edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]
        owner[(cross >= -1e-12).all(dim=1)] = k
    return owner
