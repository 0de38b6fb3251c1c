"""Worst-case perturbations of a denoiser, in the manner of Antun et al. (PNAS 2020).

Find a small perturbation ``r`` of the input that changes the output as much as possible:

    maximise  ||f(x + r) - f(x)||^2 - lam ||r||^2      (optionally with ||r|| <= max_norm)

by gradient ascent with momentum, starting from a small random ``r``. ``f`` is the denoiser for
image-domain perturbations, or the denoiser after FBP for perturbations of the measured sinogram
(:func:`through_fbp`: the scanner's FBP is differentiable). The finding is the *ratio*: how much
more the output moves for the worst ``r`` than for random perturbations of the same norm
(:func:`random_response`).

For small ``r`` the network is its local Jacobian, and the worst direction is the top right
singular vector of J (:func:`lib.linearity.power_iteration`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from lib.ct.scanner import Scanner


@dataclass
class WorstCase:
    """The perturbation found, its norm, the output change it causes, and the ascent's history."""

    perturbation: torch.Tensor
    input_norm: float
    output_change: float
    objective: list[float]

    @property
    def gain(self) -> float:
        """||f(x + r) - f(x)|| / ||r||."""
        return self.output_change / self.input_norm


def worst_case_perturbation(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                            lam: float = 0.0, max_norm: float | None = None, steps: int = 100,
                            step_size: float | None = None, momentum: float = 0.9, seed: int = 0,
                            progress: bool = False) -> WorstCase:
    """Momentum gradient ascent on ``||f(x + r) - f(x)||^2 - lam ||r||^2``.

    ``x`` is one input (batch 1). Without ``max_norm`` the norm of ``r`` is set by ``lam`` and the
    number of steps, as in Antun et al.; with it, ``r`` is projected onto the ball of that radius
    after each step (the worst case at a given norm). ``step_size`` defaults to a tenth of
    ``max_norm`` (or of 1 % of ``||x||``), applied to the normalised gradient.
    """
    if x.shape[0] != 1:
        raise ValueError(f"worst_case_perturbation takes one input (batch 1), got {tuple(x.shape)}")
    if lam < 0:
        raise ValueError(f"lam must be non-negative, got {lam}")
    if max_norm is None and lam == 0:
        raise ValueError("without max_norm the ascent needs lam > 0 to bound ||r||; give either")
    if step_size is None:
        step_size = 0.1 * (max_norm if max_norm is not None else 0.01 * float(x.norm()))
    if step_size <= 0:
        raise ValueError("the step size is zero (x is zero and no max_norm given): pass step_size")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    r = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    r *= 1e-2 * step_size / r.norm()
    with torch.no_grad():
        reference = f(x)
    velocity = torch.zeros_like(r)
    history = []
    for _ in tqdm(range(steps), desc="worst-case ascent", disable=not progress):
        r.requires_grad_(True)
        objective = (f(x + r) - reference).pow(2).sum() - lam * r.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, r)
        history.append(float(objective.detach()))
        with torch.no_grad():
            velocity = momentum * velocity + grad / grad.norm().clamp(min=1e-30)
            r = r.detach() + step_size * velocity
            if max_norm is not None and r.norm() > max_norm:
                r *= max_norm / r.norm()
    with torch.no_grad():
        change = float((f(x + r) - reference).norm())
    return WorstCase(r.detach(), float(r.norm()), change, history)


def random_response(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, norm: float,
                    n: int = 10, seed: int = 0) -> torch.Tensor:
    """||f(x + r) - f(x)|| for ``n`` random Gaussian directions ``r`` scaled to ``norm``."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    r = torch.randn((n, *x.shape[1:]), generator=generator, dtype=x.dtype).to(x.device)
    r *= norm / r.flatten(1).norm(dim=1).reshape(-1, *[1] * (x.dim() - 1))
    with torch.no_grad():
        reference = f(x)
        return (f(x + r) - reference).flatten(1).norm(dim=1)


def through_fbp(model: torch.nn.Module, scanner: Scanner) -> Callable[[torch.Tensor], torch.Tensor]:
    """``s -> model(FBP(s))`` for sinograms (B, angles, detectors): perturb the measured data."""
    def f(sinogram: torch.Tensor) -> torch.Tensor:
        return model(scanner.fbp(sinogram)[:, None])
    return f
