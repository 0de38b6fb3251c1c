"""Singular value decomposition of a local Jacobian: what a linear region keeps and removes.

Inside a linear region the denoiser is ``J0 = U S V^T``: it reads the input along the right
singular vectors ``v_i`` and passes each with gain ``s_i``. The seed paper (its equation 7)
splits an input into the part the system *preserves* and the part it *attenuates*; as printed,

    mu^p = sum_{s_i > eps} s_i (v_i^T mu) v_i,     mu^a = sum_{s_i <= eps} s_i (v_i^T mu) v_i,

with eps = 0.10 (``weighted=True``). Both live in input space and ``mu^p + mu^a = (J0^T J0)^{1/2}
mu``, the symmetric factor of the polar decomposition ``J0 = Q (J0^T J0)^{1/2}`` (Q = U V^T
orthogonal). Each term carries its gain, so ``||mu^a|| <= eps ||mu||``: the printed attenuated
part is what *survives* of the attenuated patterns, not what the network removes.

The other reading (``weighted=False``) drops the weights and splits the input itself by two
orthogonal projections, ``P_p mu = sum_{s_i > eps} (v_i^T mu) v_i`` and ``P_a mu = mu - P_p mu``,
so ``P_p mu + P_a mu = mu``: the patterns the network passes and those it (mostly) removes.

Two ways to get the decomposition:

- :func:`local_svd`: the exact Jacobian by probing (:func:`lib.linearity.jacobian`) and LAPACK;
  complete, for ROIs up to a few thousand pixels (64 x 64 takes about 20 s on two CPU cores).
- :func:`randomized_svd`: the leading ``rank`` triplets without any matrix, from JVPs and VJPs
  (Halko, Martinsson and Tropp's randomised range finder with power iterations), for large inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import jvp, vjp

from lib.linearity.jacobian import jacobian


@dataclass
class LocalSVD:
    """``J0 = U diag(S) V^T`` with singular vectors as columns; ``complete`` when all are there."""

    U: torch.Tensor
    S: torch.Tensor
    V: torch.Tensor
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    complete: bool

    def right_vector(self, i: int) -> torch.Tensor:
        """Right singular vector ``v_i`` shaped like the input."""
        return self.V[:, i].reshape(self.input_shape)

    def left_vector(self, i: int) -> torch.Tensor:
        """Left singular vector ``u_i`` shaped like the output."""
        return self.U[:, i].reshape(self.output_shape)

    def count_above(self, threshold: float = 0.10) -> int:
        """How many singular values exceed ``threshold``."""
        return int((self.S > threshold).sum())

    def effective_rank(self) -> float:
        """Roy and Vetterli's effective rank exp(entropy of s / sum s); needs the complete SVD."""
        self._need_complete("the effective rank")
        p = self.S / self.S.sum()
        p = p[p > 0]
        return float(torch.exp(-(p * p.log()).sum()))

    def energy_on(self, mask: torch.Tensor, vectors: slice | list[int]) -> float:
        """Mean share of the right singular vectors ``vectors`` that lies on the pixels ``mask``.

        ``mean_i sum_{p in mask} v_i[p]^2`` (each ``v_i`` has unit norm): 1 when the patterns
        live on ``mask`` alone, ``|mask| / n`` on average for patterns spread evenly.
        """
        on = mask.reshape(-1).to(self.V.device)
        if len(on) != self.V.shape[0]:
            raise ValueError(f"the mask has {len(on)} pixels, the input {self.V.shape[0]}")
        return float(self.V[on][:, vectors].pow(2).sum(0).mean())

    def input_share(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """The share of each input's squared norm in the span of the leading ``k`` right
        singular vectors (all computed by default), ``||V_k^T x||^2 / ||x||^2`` -> (N,)."""
        flat = x.reshape(len(x), -1).to(self.V.dtype)
        return (flat @ self.V[:, :k]).pow(2).sum(1) / flat.pow(2).sum(1)

    def preserved(self, x: torch.Tensor, threshold: float = 0.10,
                  weighted: bool = True) -> torch.Tensor:
        """The preserved part of inputs ``x`` (N, ...input shape): equation 7 as printed
        (``weighted``), or the projection ``P_p x`` onto the ``v_i`` with ``s_i > threshold``."""
        if not self.complete and float(self.S[-1]) > threshold:
            raise ValueError(f"all {len(self.S)} singular values computed exceed {threshold}: the "
                             "preserved part needs more of them; raise `rank`")
        return self._part(x, self.S > threshold, weighted)

    def attenuated(self, x: torch.Tensor, threshold: float = 0.10,
                   weighted: bool = True) -> torch.Tensor:
        """The attenuated part: equation 7 as printed (``weighted``; needs the complete SVD), or
        the projection ``P_a x = x - P_p x``."""
        if not weighted:
            return x - self.preserved(x, threshold, weighted=False).to(x.dtype)
        self._need_complete("the attenuated part")
        return self._part(x, self.S <= threshold, weighted)

    def _part(self, x: torch.Tensor, keep: torch.Tensor, weighted: bool) -> torch.Tensor:
        flat = x.reshape(len(x), -1).to(self.V.dtype)
        V = self.V[:, keep]
        coefficients = flat @ V
        if weighted:
            coefficients = coefficients * self.S[keep]
        return (coefficients @ V.T).reshape(x.shape)

    def _need_complete(self, what: str) -> None:
        if not self.complete:
            raise ValueError(f"{what} needs every singular value; this SVD has the leading "
                             f"{len(self.S)} only. Use local_svd (dense) on a smaller ROI.")


def local_svd(model: torch.nn.Module, x0: torch.Tensor, field: int | None = None,
              progress: bool = False) -> LocalSVD:
    """The complete SVD of the exact Jacobian at ``x0`` (1, 1, H, W), in ``x0``'s dtype."""
    J = jacobian(model, x0, field=field, progress=progress)
    U, S, Vh = torch.linalg.svd(J, full_matrices=False)
    out_shape = (x0.shape[-2], x0.shape[-1])
    return LocalSVD(U, S, Vh.T, tuple(x0.shape[2:]), out_shape, complete=True)


def randomized_svd(model: torch.nn.Module, x0: torch.Tensor, rank: int, oversample: int = 10,
                   power_iterations: int = 2, seed: int = 0) -> LocalSVD:
    """The leading ``rank`` singular triplets of the Jacobian at ``x0``, matrix-free.

    ``rank + oversample`` JVPs sketch the range of J, each power iteration costs as many VJPs and
    JVPs (sharpening a slowly decaying spectrum), and one last batch of VJPs gives ``Q^T J``.
    """
    if x0.shape[0] != 1:
        raise ValueError(f"randomized_svd takes a single input (batch 1), got {tuple(x0.shape)}")
    k = rank + oversample
    n_in = x0[0].numel()
    if k > n_in:
        raise ValueError(f"rank + oversample = {k} exceeds the input size {n_in}; use local_svd")
    primal = x0.expand(k, *x0.shape[1:]).contiguous()
    out, pull = vjp(model, primal)
    out_shape = tuple(out.shape[2:])

    def apply(v):  # J v for k directions (k, n_in) -> (k, n_out)
        return jvp(model, (primal,), (v.reshape(primal.shape),))[1].reshape(k, -1)

    def apply_t(u):  # J^T u for k directions (k, n_out) -> (k, n_in)
        return pull(u.reshape(out.shape))[0].reshape(k, -1)

    generator = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.randn(k, n_in, generator=generator, dtype=x0.dtype).to(x0.device)
    Q = torch.linalg.qr(apply(omega).T).Q  # (n_out, k)
    for _ in range(power_iterations):
        Q = torch.linalg.qr(apply_t(Q.T).T).Q  # orthonormal basis of the row space
        Q = torch.linalg.qr(apply(Q.T).T).Q
    B = apply_t(Q.T)  # rows: (J^T q_j)^T, i.e. B = Q^T J  (k, n_in)
    Ub, S, Vh = torch.linalg.svd(B.detach(), full_matrices=False)
    U = Q.detach() @ Ub
    return LocalSVD(U[:, :rank], S[:rank], Vh[:rank].T, tuple(x0.shape[2:]), out_shape,
                    complete=False)


def power_iteration(model: torch.nn.Module, x0: torch.Tensor, iterations: int = 50,
                    seed: int = 0) -> tuple[float, torch.Tensor, list[float]]:
    """The top singular value and right singular vector of the Jacobian at ``x0``, matrix-free.

    Iterates ``v <- J^T J v / ||J^T J v||`` with one JVP and one VJP per step. Returns
    ``(s_1, v_1 shaped like x0, estimate of s_1 after each step)``.
    """
    if x0.shape[0] != 1:
        raise ValueError(f"power_iteration takes a single input (batch 1), got {tuple(x0.shape)}")
    _, pull = vjp(model, x0)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    v /= v.norm()
    history = []
    for _ in range(iterations):
        Jv = jvp(model, (x0,), (v,))[1]
        history.append(float(Jv.detach().norm()))
        w = pull(Jv)[0].detach()
        v = w / w.norm()
    s = float(jvp(model, (x0,), (v,))[1].norm())
    return s, v.detach(), history
