"""Worst-case perturbations of a denoiser, in the manner of Antun et al. (PNAS 2020).

Find a small perturbation ``r`` of the input that changes the output as much as possible:

    maximise  ||f(x + r) - f(x)||^2 - lam ||r||^2      (optionally with ||r|| <= max_norm)

by gradient ascent with momentum, starting from a small random ``r``. ``f`` is the denoiser for
image-domain perturbations, the denoiser after FBP for free perturbations of the measured sinogram
(:func:`through_fbp`), or the denoiser after FBP of ``s + A r`` for image perturbations entered as
measured data (:func:`through_projection`, Antun's CT setting). The finding is the *ratio*: how much
more the output moves for the worst ``r`` than for random perturbations of the same norm
(:func:`random_response`, white or with a given texture such as scanner noise);
:func:`against_random` puts the worst case and both controls side by side.

For small ``r`` the network is its local Jacobian and ``r = eps v_1`` (top right singular vector,
:func:`lib.linearity.power_iteration`) attains the gain ``s_1``; :func:`worst_case` reports the
better of the ascent and that direction, and :func:`check_worst_case` tests that claim.
"Small" is exact: :func:`check_s1_attained` finds how far ``x +- t v_1`` stays in the linear region
of ``x`` and tests the gain inside it.

Antun's second kind of instability is the false negative: a small real feature that the network
does not reconstruct (``Erasure.kept``, the lesion's contrast the output keeps). Its stronger,
adversarial form: :func:`erase_lesion` searches for the perturbation that makes a lesion vanish
from the output, so that its norm can be compared with the lesion's own
(:func:`check_no_false_negative`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from lib.ct.scanner import Scanner
from lib.linearity.regions import distance_to_boundary


@dataclass
class WorstCase:
    """The perturbation found, its norm, the output change it causes, and the ascent's history.

    ``source`` says where ``perturbation`` came from: ``"ascent"`` or ``"direction"`` (the given
    direction, e.g. the top singular vector, when it beat the ascent).
    """

    perturbation: torch.Tensor
    input_norm: float
    output_change: float
    objective: list[float]
    source: str = "ascent"

    @property
    def gain(self) -> float:
        """||f(x + r) - f(x)|| / ||r||."""
        return self.output_change / self.input_norm


def _ascent(objective: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            max_norm: float | None, steps: int, step_size: float, momentum: float, seed: int,
            progress: bool) -> tuple[torch.Tensor, list[float]]:
    """Momentum ascent on ``objective(r)`` from a tiny random ``r``, projected on ||r|| <= max_norm.

    Steps follow the normalised gradient, ``v <- m v + g / ||g||``, ``r <- r + step v``. Within a
    ball the step decays linearly to a tenth of ``step_size`` so that the iterate settles; without
    one (Antun's penalised form) it stays fixed, so that ``||r||`` can grow.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    r = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    r *= 1e-2 * step_size / r.norm()
    velocity = torch.zeros_like(r)
    history = []
    for k in tqdm(range(steps), desc="perturbation search", disable=not progress):
        r.requires_grad_(True)
        value = objective(r)
        (grad,) = torch.autograd.grad(value, r)
        history.append(float(value.detach()))
        with torch.no_grad():
            velocity = momentum * velocity + grad / grad.norm().clamp(min=1e-30)
            decay = 1 - 0.9 * k / max(steps - 1, 1) if max_norm is not None else 1.0
            r = r.detach() + step_size * decay * velocity
            if max_norm is not None and r.norm() > max_norm:
                r *= max_norm / r.norm()
    return r.detach(), history


def _default_step(x: torch.Tensor, max_norm: float | None, step_size: float | None) -> float:
    if step_size is None:
        step_size = 0.1 * (max_norm if max_norm is not None else 0.01 * float(x.norm()))
    if step_size <= 0:
        raise ValueError("the step size is zero (x is zero and no max_norm given): pass step_size")
    return step_size


def _one_input(x: torch.Tensor, who: str) -> None:
    if x.shape[0] != 1:
        raise ValueError(f"{who} takes one input (batch 1), got {tuple(x.shape)}")


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
    _one_input(x, "worst_case_perturbation")
    if lam < 0:
        raise ValueError(f"lam must be non-negative, got {lam}")
    if max_norm is None and lam == 0:
        raise ValueError("without max_norm the ascent needs lam > 0 to bound ||r||; give either")
    step_size = _default_step(x, max_norm, step_size)
    with torch.no_grad():
        reference = f(x)
    r, history = _ascent(lambda r: (f(x + r) - reference).pow(2).sum() - lam * r.pow(2).sum(),
                         x, max_norm, steps, step_size, momentum, seed, progress)
    with torch.no_grad():
        change = float((f(x + r) - reference).norm())
    return WorstCase(r, float(r.norm()), change, history)


def worst_case(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, max_norm: float,
               direction: torch.Tensor, steps: int = 100, seed: int = 0) -> WorstCase:
    """The larger output change of the ascent at ``max_norm`` and of ``+-max_norm * direction``.

    ``direction`` (shaped like ``x``) is typically the top right singular vector ``v_1``, which
    attains the gain ``s_1`` wherever the network is linear over the ball; the ascent can beat it
    only by leaving the linear region. Both signs are tried (a ReLU network is not odd).
    """
    found = worst_case_perturbation(f, x, max_norm=max_norm, steps=steps, seed=seed)
    unit = direction / direction.norm()
    with torch.no_grad():
        reference = f(x)
        for sign in (1.0, -1.0):
            r = sign * max_norm * unit
            change = float((f(x + r) - reference).norm())
            if change > found.output_change:
                found = WorstCase(r, max_norm, change, found.objective, "direction")
    return found


def random_response(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, norm: float,
                    n: int = 10, seed: int = 0,
                    directions: torch.Tensor | None = None) -> torch.Tensor:
    """||f(x + r) - f(x)|| for random perturbations ``r`` scaled to ``norm``.

    By default ``n`` Gaussian (white) directions; with ``directions`` (k, ...) those instead, e.g.
    realisations of scanner noise (:func:`lib.ct.scenes.scanner_noise`) for a control with the
    texture of real noise.
    """
    if directions is None:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        directions = torch.randn((n, *x.shape[1:]), generator=generator, dtype=x.dtype)
    r = directions.to(device=x.device, dtype=x.dtype)
    if r.shape[1:] != x.shape[1:]:
        raise ValueError(f"directions {tuple(r.shape)} do not match the input {tuple(x.shape)}")
    r = r * (norm / r.flatten(1).norm(dim=1).reshape(-1, *[1] * (x.dim() - 1)))
    with torch.no_grad():
        reference = f(x)
        return (f(x + r) - reference).flatten(1).norm(dim=1)


@dataclass
class AgainstRandom:
    """The worst perturbation of norm ``norm`` against random ones of the same norm.

    ``white`` and ``textured`` hold the output changes ``||f(x + r) - f(x)||`` of the random
    perturbations (:func:`random_response`); gains are output change over ``norm``.
    """

    worst: WorstCase
    norm: float
    white: torch.Tensor
    textured: torch.Tensor

    @property
    def white_gain(self) -> float:
        return float(self.white.mean()) / self.norm

    @property
    def textured_gain(self) -> float:
        return float(self.textured.mean()) / self.norm

    @property
    def textured_gain_std(self) -> float:
        """Spread of the textured gains over the realizations (0 for a single one)."""
        return float(self.textured.std()) / self.norm if len(self.textured) > 1 else 0.0

    @property
    def over_white(self) -> float:
        """How many times more the worst case moves the output than white noise does.

        A ratio of output changes: the worst case's norm is at most ``norm``, the controls' is
        exactly ``norm``, so the ratio never flatters the worst case.
        """
        return self.worst.output_change / float(self.white.mean())

    @property
    def over_textured(self) -> float:
        """How many times more the worst case moves the output than textured noise does."""
        return self.worst.output_change / float(self.textured.mean())


def against_random(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, norm: float,
                   textured: torch.Tensor, direction: torch.Tensor | None = None,
                   steps: int = 100, n_white: int = 10, seed: int = 0) -> AgainstRandom:
    """The worst perturbation of norm ``norm`` and two random controls of that norm.

    The worst case is :func:`worst_case` with ``direction`` (e.g. ``v_1``) when given, else the
    ascent :func:`worst_case_perturbation`; the controls are ``n_white`` white Gaussian directions
    and the realizations ``textured`` (k, ...) of noise with a texture (scanner noise).
    """
    if direction is None:
        worst = worst_case_perturbation(f, x, max_norm=norm, steps=steps, seed=seed)
    else:
        worst = worst_case(f, x, norm, direction, steps=steps, seed=seed)
    white = random_response(f, x, norm, n=n_white, seed=seed)
    return AgainstRandom(worst, norm, white, random_response(f, x, norm, directions=textured))


def check_worst_case(gain: float, s1: float, tolerance: float = 0.01) -> None:
    """Raise ``AssertionError`` unless a reported worst-case gain reaches ``(1 - tolerance) s_1``.

    Where the network is linear over the ball, ``eps v_1`` attains ``s_1`` exactly, so a worst case
    that falls short of it was not the worst case (a weak search, a wrong ``v_1``, or ``s_1`` from
    another network).
    """
    if not gain >= (1 - tolerance) * s1:
        raise AssertionError(f"the worst-case gain {gain:.4f} falls short of s_1 = {s1:.4f} by "
                             f"more than {tolerance:.0%}: the search or the top singular pair is "
                             "wrong")


def check_s1_attained(model: torch.nn.Module, x: torch.Tensor, s1: float, v1: torch.Tensor,
                      rtol: float = 1e-5) -> tuple[float, float]:
    """Raise ``AssertionError`` unless ``x +- t v_1`` attains the gain ``s_1`` inside x's region.

    The exact form of "eps v_1 attains s_1 where the network is linear": the line leaves the
    linear region of ``x`` at ``t_+`` along ``+v_1`` and ``t_-`` along ``-v_1``
    (:func:`lib.linearity.distance_to_boundary`), and at ``t = t_+- / 2`` the gain
    ``||f(x +- t u) - f(x)|| / t`` (float64, ``u = v_1 / ||v_1||``) must equal ``s_1`` within
    ``rtol``. It fails for an ``s_1`` or ``v_1`` of another input or network, and where the
    network's autograd Jacobian is not the map it computes; that ``v_1`` is the *top* direction
    needs another check (chapter 8 compares ``s_1`` with a randomised SVD's leading value).
    Returns ``(t_+, t_-)``, in the units of ``x``.
    """
    unit = (v1 / v1.norm()).double()
    net = copy.deepcopy(model).double().eval()
    x64 = x.double()
    reach = []
    with torch.no_grad():
        reference = net(x64)
        for sign in (1.0, -1.0):
            t = distance_to_boundary(net, x64, sign * unit)
            step = min(t, 1.0) / 2  # an affine network has no boundary: any step will do
            gain = float((net(x64 + sign * step * unit) - reference).norm()) / step
            if abs(gain - s1) > rtol * s1:
                raise AssertionError(
                    f"inside the linear region of x (t < {t:.3g} along {sign:+.0f} v_1) the gain "
                    f"is {gain:.6f}, not s_1 = {s1:.6f}: s_1 and v_1 do not belong to this network "
                    "at this input")
            reach.append(t)
    return reach[0], reach[1]


def through_fbp(model: torch.nn.Module, scanner: Scanner) -> Callable[[torch.Tensor], torch.Tensor]:
    """``s -> model(FBP(s))`` for sinograms (B, angles, detectors): perturb the measured data."""
    def f(sinogram: torch.Tensor) -> torch.Tensor:
        return model(scanner.fbp(sinogram)[:, None])
    return f


def through_projection(model: torch.nn.Module, scanner: Scanner,
                       sinogram: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``r -> model(FBP(s + A r))`` for image perturbations r (B, 1, H, W) of the object.

    Antun et al.'s CT setting: the perturbation is a change of the patient, seen only through the
    measured data ``s`` (1, angles, detectors); evaluate at ``r = 0`` for the unperturbed output.
    """
    def f(r: torch.Tensor) -> torch.Tensor:
        return model(scanner.fbp(sinogram + scanner.project(r[:, 0]))[:, None])
    return f


@dataclass
class Erasure:
    """A perturbation that hides a lesion, and how much of the lesion the output still shows.

    ``kept`` is the lesion's contrast in the output of the unperturbed input over its contrast in
    the input (Antun's false negative is a small ``kept``); ``lesion_left`` is relative to it.
    """

    perturbation: torch.Tensor
    input_norm: float
    lesion_left: float
    objective: list[float]
    kept: float


def lesion_signal(output: torch.Tensor, without: torch.Tensor, profile: torch.Tensor) -> float:
    """The lesion's contrast in an output, ``<profile, output - without> / <profile, profile>``."""
    return float(((output - without) * profile).sum() / profile.pow(2).sum())


def erase_lesion(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 profile: torch.Tensor, contrast: float, max_norm: float, steps: int = 100,
                 seed: int = 0) -> Erasure:
    """Search ``r`` with ``||r|| <= max_norm`` that removes the lesion ``contrast * profile`` from
    the output ``f(x + r)``.

    ``x`` holds the lesion. The ascent maximises ``-||profile * (f(x + r) - f(x - contrast *
    profile))||^2``: inside the lesion, make the output equal to the output without it.
    ``lesion_left`` is the lesion's contrast in ``f(x + r)`` over its contrast in ``f(x)``
    (:func:`lesion_signal`): 1 untouched, 0 erased.
    """
    _one_input(x, "erase_lesion")
    if contrast <= 0 or max_norm <= 0:
        raise ValueError(f"contrast and max_norm must be positive, got {contrast} and {max_norm}")
    with torch.no_grad():
        without = f(x - contrast * profile)
        before = lesion_signal(f(x), without, profile)
    if before <= 0:
        raise ValueError(f"the output shows no lesion to erase (contrast {before:.2e})")
    r, history = _ascent(lambda r: -((f(x + r) - without) * profile).pow(2).sum(), x, max_norm,
                         steps, 0.1 * max_norm, 0.9, seed, False)
    with torch.no_grad():
        left = lesion_signal(f(x + r), without, profile) / before
    return Erasure(r, float(r.norm()), left, history, before / contrast)


def check_no_false_negative(erasure: Erasure, lesion_norm: float) -> None:
    """Raise ``AssertionError`` if a perturbation erased more of the lesion than twice its share.

    Subtracting a fraction ``f`` of the lesion itself (norm ``f ||lesion||``) leaves ``1 - f`` of
    it. A network without a false-negative instability offers no much cheaper way: this fails
    when ``lesion_left < 1 - 2 f`` with ``f = ||r|| / ||lesion||``. From ``f = 1 / 2`` on the
    bound allows erasing all of the lesion and the check could not fail, so it refuses.
    """
    fraction = erasure.input_norm / lesion_norm
    if fraction >= 0.5:
        raise ValueError(f"a perturbation of {fraction:.3f} of the lesion's norm may erase all of "
                         "it without instability, so this check cannot fail there: check sizes "
                         "below half the lesion's norm")
    if erasure.lesion_left < 1 - 2 * fraction:
        raise AssertionError(f"a perturbation of {fraction:.3f} of the lesion's norm left only "
                             f"{erasure.lesion_left:.2f} of the lesion: a false-negative "
                             "instability")
