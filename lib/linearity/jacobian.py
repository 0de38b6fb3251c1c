"""Exact local Jacobians of convolutional denoisers, by receptive-field probing.

For a convolutional network, output pixel i depends only on the inputs inside its receptive field
(RF x RF pixels around it). Probe the network with the sum of unit impulses on a lattice of
spacing s >= RF: in the JVP ``J p``, output pixel i receives a contribution from exactly one
lattice point, the one inside its field, so ``(J p)_i = J[i, j(i)]``. The s^2 shifted lattices
recover every entry of J in RF^2 products ``J p`` instead of one autograd call per output pixel
(4096 for a 64 x 64 ROI). The products run as plain batched forward passes of the network with its
activation pattern frozen at x (:func:`lib.linearity.tracing.local_linear_map`), so the input's own
forward pass is done once, not once per probe. The receptive field is measured by
:func:`lib.models.receptive_field`. A ``field`` smaller than the true one would alias entries; so
the assembled J is checked against one more product ``J v`` with a random ``v`` (all entries
non-zero, so every aliased entry shows) and refused when they differ by more than
``sqrt(machine epsilon)`` relative.

At a point inside a linear region the network is exactly ``H(x) = H(x0) + J0 (x - x0)``;
:func:`linearize` evaluates that with one JVP and never forms J.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import torch
from torch.func import jvp, vjp
from tqdm.auto import tqdm

from lib.linearity.tracing import activation_pattern, check_finite, local_linear_map
from lib.models.receptive_field import receptive_field


def _spatial(x: torch.Tensor) -> tuple[int, int]:
    return x.shape[-2], x.shape[-1]


def _check(x: torch.Tensor, field: int | None, caller: str) -> int | None:
    """Refuse inputs that are not one finite image or slab, and fields that are not positive."""
    if x.dim() not in (4, 5) or x.shape[0] != 1:
        raise ValueError(f"{caller} takes a single input of shape (1, 1, H, W) or a slab "
                         f"(1, 1, D, H, W), got shape {tuple(x.shape)}")
    check_finite(x=x)
    if field is not None and (int(field) != field or field < 1):
        raise ValueError(f"field must be a positive number of pixels, got {field!r}")
    return field


def _probe_entries(model, x, field, batch, progress):
    """(rows, cols, values) of every possibly non-zero Jacobian entry, by lattice probing."""
    apply_jacobian = local_linear_map(model, x[:1])  # refuses networks that are not piecewise linear
    height, width = _spatial(x)
    lead = x.shape[2:-2]  # slab depth for 3-D networks
    n_lead = int(torch.tensor(lead).prod()) if lead else 1
    s = field
    # offsets past the image edge would give empty probes: at most H x W of them are needed
    offsets = [(k, a, b) for k in range(n_lead) for a in range(min(s, height))
               for b in range(min(s, width))]
    rows, cols, vals = [], [], []
    out_rows = torch.arange(height, device=x.device).view(-1, 1).expand(height, width)
    out_cols = torch.arange(width, device=x.device).view(1, -1).expand(height, width)

    for start in tqdm(range(0, len(offsets), batch), desc="probing Jacobian", disable=not progress):
        chunk = offsets[start:start + batch]
        probes = torch.zeros(len(chunk), *x.shape[1:], dtype=x.dtype, device=x.device)
        flat = probes.view(len(chunk), n_lead, height, width)
        for i, (k, a, b) in enumerate(chunk):
            flat[i, k, a::s, b::s] = 1.0
        tangent = apply_jacobian(probes)
        tangent = tangent.reshape(len(chunk), -1, *tangent.shape[-2:])[:, 0]
        if tangent.shape[-2:] != (height, width):
            raise ValueError("lattice probing needs outputs the size of the input slices")
        for i, (k, a, b) in enumerate(chunk):
            # the lattice point (a + s m, b + s n) nearest to each output pixel
            p = a + s * torch.round((out_rows - a) / s).long()
            q = b + s * torch.round((out_cols - b) / s).long()
            ok = (p >= 0) & (p < height) & (q >= 0) & (q < width)
            rows.append((out_rows * width + out_cols)[ok])
            cols.append((k * height * width + p * width + q)[ok])
            vals.append(tangent[i][ok])
    rows, cols, vals = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    _verify(apply_jacobian, x, field, rows, cols, vals)
    return rows, cols, vals


def _verify(apply_jacobian, x, field, rows, cols, vals) -> None:
    """Compare the assembled entries with one direct product ``J v`` (random ``v``)."""
    generator = torch.Generator(device=x.device).manual_seed(0)
    v = torch.randn(x[0].numel(), generator=generator, dtype=x.dtype, device=x.device)
    direct = apply_jacobian(v.view(1, *x.shape[1:])).flatten()
    assembled = torch.zeros_like(direct).index_add_(0, rows, vals * v[cols])
    error = float((assembled - direct).abs().max())
    scale = float(direct.abs().max()) or 1.0
    if error > torch.finfo(x.dtype).eps ** 0.5 * scale:
        raise ValueError(f"field={field} is smaller than the network's receptive field: the "
                         f"probed Jacobian differs from a direct product J v by {error / scale:.2g} "
                         "(relative); leave field=None to measure it, or pass a larger one")


def jacobian(model: torch.nn.Module, x: torch.Tensor, field: int | None = None,
             batch: int = 32, progress: bool = False) -> torch.Tensor:
    """The exact Jacobian at a single input ``x`` (1, 1, H, W) as a dense (n_out, n_in) tensor.

    Pixels are in row-major order (slab inputs (1, 1, D, H, W): slice-major). ``field`` is the
    receptive field in pixels (measured when not given); ``batch`` probes run per forward pass.
    """
    field = _check(x, field, "jacobian") or max(receptive_field(model, depth=x.shape[2] if x.dim() == 5 else None)[-2:])
    rows, cols, vals = _probe_entries(model, x, field, batch, progress)
    n_out = x.shape[-2] * x.shape[-1]
    dense = torch.zeros(n_out, x[0].numel(), dtype=x.dtype, device=x.device)
    dense[rows, cols] = vals
    return dense


def sparse_jacobian(model: torch.nn.Module, x: torch.Tensor, field: int | None = None,
                    batch: int = 32, progress: bool = True) -> torch.Tensor:
    """The same exact Jacobian as a sparse COO tensor, for whole slices too large for a dense
    matrix (n_out * RF^2 stored entries instead of n_out * n_in)."""
    field = _check(x, field, "sparse_jacobian") or max(receptive_field(model, depth=x.shape[2] if x.dim() == 5 else None)[-2:])
    rows, cols, vals = _probe_entries(model, x, field, batch, progress)
    n_out = x.shape[-2] * x.shape[-1]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals,
                                   (n_out, x[0].numel())).coalesce()


def jacobian_row(model: torch.nn.Module, x: torch.Tensor, pixel: tuple[int, int]) -> torch.Tensor:
    """Row ``pixel`` (row, col) of the Jacobian at ``x``: the output pixel's *equivalent filter*,
    the weights with which it sums the input, shaped like the input. One VJP."""
    _check(x, None, "jacobian_row")
    activation_pattern(model, x)  # refuses networks that are not piecewise linear
    out, pull = vjp(model, x)
    seed = torch.zeros_like(out)
    seed[0, 0, pixel[0], pixel[1]] = 1.0
    return pull(seed)[0][0, 0].detach()


def compare_rows(rows: list[torch.Tensor]) -> tuple[list[float], float]:
    """How much consecutive Jacobian rows (equivalent filters) of one pixel differ.

    Returns the cosine similarity ``<r_k, r_{k+1}> / (|r_k| |r_{k+1}|)`` of each consecutive pair
    (1 for the same filter up to scale) and the largest entry change ``max |r_{k+1} - r_k|``.

    >>> compare_rows([torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])])
    ([0.7071067690849304], 1.0)
    """
    if len(rows) < 2:
        raise ValueError(f"need two or more rows to compare, got {len(rows)}")
    pairs = list(itertools.pairwise(rows))
    cosines = [float((u * v).sum() / (u.norm() * v.norm())) for u, v in pairs]
    return cosines, max(float((v - u).abs().max()) for u, v in pairs)


@dataclass
class Linearization:
    """``H(x0) + J0 (x - x0)``: the network's linear system at ``x0``, evaluated by one JVP."""

    model: torch.nn.Module
    x0: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        base, change = jvp(self.model, (self.x0.expand_as(x).contiguous(),), (x - self.x0,))
        return base + change

    def apply_jacobian(self, v: torch.Tensor) -> torch.Tensor:
        """``J0 v`` for a batch of directions ``v`` shaped like the input."""
        return jvp(self.model, (self.x0.expand_as(v).contiguous(),), (v,))[1]


def linearize(model: torch.nn.Module, x0: torch.Tensor, dtype=torch.float64) -> Linearization:
    """The local linear system of ``model`` at ``x0`` (a copy of the model in ``dtype``)."""
    check_finite(x0=x0)
    net = copy.deepcopy(model).to(dtype).eval().requires_grad_(False)  # a private copy
    activation_pattern(net, x0.to(dtype))  # refuses networks that are not piecewise linear
    return Linearization(net, x0.to(dtype))
