"""The exact local invariances of a layer: the (near) null space of its Jacobian.

The denoisers are piecewise linear, so with the activation pattern frozen at a patch ``x``,
``Phi_l(x + d) = Phi_l(x) + J_l d`` for small ``d``: layer ``l`` is blind, to first order and
exactly inside the linear region, to every ``d`` in the null space of ``J_l``. With the SVD
``J_l = U S V^T`` (from the eigenvectors of ``J_l^T J_l``; singular values
``s_1 >= s_2 >= ...`` over the ``n = P^2`` input pixels), the
*near null space* is spanned by the right singular vectors with ``s_i < tau s_1`` (``tau`` as in
equation 7 of Li et al.); projecting scanner noise onto it, ``P_0 n = V_0 V_0^T n``, gives the part
of the noise that layer ``l`` cannot see. That is a prediction for the spread of invariance
samples that needs no generative model.

``J_l`` is formed column by column from ``J_l e_j`` with
:func:`lib.linearity.tracing.local_linear_map` (the activation pattern frozen at ``x``), in
float64.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from lib.invariance.layers import layer_output
from lib.linearity.tracing import local_linear_map


class _Phi(nn.Module):
    """Phi_l as a module, for the tracer."""

    def __init__(self, model: nn.Module, layer: int):
        super().__init__()
        self.model, self.layer = model, layer

    def forward(self, x):
        return layer_output(self.model, x, self.layer)


def feature_jacobian(model: nn.Module, x: torch.Tensor, layer: int,
                     batch: int = 256) -> torch.Tensor:
    """The Jacobian of Phi_l at a single patch ``x`` (1, 1, P, P): (n_features, P^2), float64."""
    if x.shape[0] != 1:
        raise ValueError(f"feature_jacobian takes a single patch (batch 1), got {tuple(x.shape)}")
    phi = _Phi(copy.deepcopy(model).double().eval().requires_grad_(False), layer)
    x = x.double()
    apply = local_linear_map(phi, x)
    eye = torch.eye(x[0].numel(), dtype=torch.float64, device=x.device).view(-1, *x.shape[1:])
    columns = [apply(eye[k:k + batch]).flatten(1) for k in range(0, len(eye), batch)]
    return torch.cat(columns).T


@dataclass
class NullSpace:
    """The SVD of a layer's Jacobian at one patch and its near null space."""

    singular_values: torch.Tensor  # (n,), descending (zeros where J has fewer rows than n)
    right_vectors: torch.Tensor    # (n, n): row i is v_i
    tau: float

    @property
    def null_basis(self) -> torch.Tensor:
        """Rows v_i with s_i < tau s_1: an orthonormal basis of the near null space."""
        return self.right_vectors[self.singular_values < self.tau * self.singular_values[0]]

    @property
    def dimension(self) -> int:
        return len(self.null_basis)

    def project(self, images: torch.Tensor) -> torch.Tensor:
        """``P_0 n`` for a batch of images (B, 1, P, P): the part the layer cannot see."""
        q = self.null_basis.to(images.device)
        flat = images.double().flatten(1)
        return ((flat @ q.T) @ q).view_as(images)


def null_space(model: nn.Module, x: torch.Tensor, layer: int, tau: float = 0.1) -> NullSpace:
    """Near null space of ``J_l`` at ``x``: right singular vectors with ``s_i < tau s_1``."""
    if not 0 < tau < 1:
        raise ValueError(f"tau is a fraction of the largest singular value, in (0, 1); got {tau}")
    jac = feature_jacobian(model, x, layer)
    # J^T J = V S^2 V^T: only the input side is needed, whatever the number of features
    eigenvalues, vectors = torch.linalg.eigh(jac.T @ jac)
    order = eigenvalues.flip(0).clamp_min(0).sqrt()
    return NullSpace(order, vectors.flip(1).T.contiguous(), tau)
