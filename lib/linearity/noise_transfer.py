"""Noise through a denoiser and through the linear system of the region that serves the input.

For realizations ``n_k`` of scanner noise added to a noise-free input ``x``, compare the network's
outputs ``H(x + n_k)`` with the predictions of the linear system at an operating point ``x0``,

    L(x + n_k) = H(x0) + J0 (x + n_k - x0),

pixel by pixel through the standard deviation over the realizations, ``sd(.)``. Over a set of
pixels ``M``:

- noise reduction ``mean_M sd(H) / mean_M sd(x + n)`` (1: nothing removed),
- removed variance ``1 - mean_M sd(H)^2 / mean_M sd(x + n)^2``,
- disagreement of the linear system ``mean_M |sd(H) - sd(L)| / mean_M sd(H)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lib.ct.units import HU_PER_MU
from lib.linearity.jacobian import linearize


@dataclass
class NoiseTransfer:
    """Noisy inputs (K, 1, H, W), the network's outputs of them and the linear predictions."""

    inputs: torch.Tensor
    network: torch.Tensor
    linear: torch.Tensor

    def std(self) -> dict[str, torch.Tensor]:
        """(H, W) standard deviation over the realizations of ``"input"``, ``"network"`` and
        ``"linear"`` (mm^-1)."""
        return {name: t.std(dim=0)[0].cpu() for name, t in
                (("input", self.inputs), ("network", self.network), ("linear", self.linear))}

    def over(self, mask: torch.Tensor) -> dict[str, float]:
        """Statistics over the pixels ``mask`` (H, W): pixel count, mean standard deviation of
        input, network and linear prediction in HU, and the network's noise ``reduction``."""
        std = self.std()
        hu = {name: float(s[mask].mean()) * HU_PER_MU for name, s in std.items()}
        return {"pixels": int(mask.sum()), **hu, "reduction": hu["network"] / hu["input"]}

    def removed_variance(self, mask: torch.Tensor) -> float:
        """``1 - mean_M sd(H)^2 / mean_M sd(x + n)^2``: the share of noise variance removed."""
        std = self.std()
        return 1 - float(std["network"][mask].pow(2).mean() / std["input"][mask].pow(2).mean())

    def linear_disagreement(self, mask: torch.Tensor) -> float:
        """``mean_M |sd(H) - sd(L)| / mean_M sd(H)``: how far the linear system's noise map is
        from the network's (0 where the network is linear over the noise)."""
        std = self.std()
        gap = (std["network"] - std["linear"])[mask].abs().mean()
        return float(gap / std["network"][mask].mean())


def noise_transfer(model: torch.nn.Module, x: torch.Tensor, x0: torch.Tensor,
                   noise: torch.Tensor, batch: int = 25) -> NoiseTransfer:
    """``x + noise`` (noise (K, 1, H, W)) through ``model`` and through its linearisation at
    ``x0``, in ``batch``-sized pieces, in the dtype of ``x``."""
    if noise.shape[1:] != x.shape[1:]:
        raise ValueError(f"noise {tuple(noise.shape)} does not match the input {tuple(x.shape)}")
    lin = linearize(model, x0, dtype=x.dtype)
    inputs = x + noise.to(x)
    with torch.no_grad():
        network = torch.cat([model(part) for part in inputs.split(batch)])
    linear = torch.cat([lin(part) for part in inputs.split(batch)])
    return NoiseTransfer(inputs, network, linear)
