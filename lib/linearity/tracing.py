"""Seeing every ReLU of a network, whether it is a module or a functional call.

A :class:`torch.overrides.TorchFunctionMode` intercepts ``F.relu``, ``torch.relu``, ``Tensor.relu``
and ``F.leaky_relu`` during a forward pass, records each call's pre-activation ``z`` (and, under
forward-mode AD, its tangent ``dz``), and applies the activation as ``z * mask`` with the mask of
its choosing. Any other nonlinearity is refused with an error that names it: the exact analysis
holds only for piecewise linear networks (convolutions, transposed convolutions, linear layers,
ReLU / LeakyReLU, concatenation, addition, fixed affine maps).

The mask rule is *right-continuous along the path*: a unit is active when ``z > tol``, or when
``|z| <= tol`` and ``dz > 0`` (it is about to become active). So at a breakpoint the recorded
pattern is that of the region just after it, even when several units cross at once. ``tol`` is
relative: ``rel_tol`` times the largest ``|z|`` of the same call and sample, so that rounding in
float64 (about 1e-16 relative) never decides a unit's state, while genuinely distinct crossings
(more than ``rel_tol`` apart) stay distinct.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_RELU = {F.relu, torch.relu, torch.Tensor.relu, F.relu_, torch.relu_, torch.Tensor.relu_}
_LEAKY = {F.leaky_relu, F.leaky_relu_}
_REFUSED = {
    torch.tanh: "tanh", F.tanh: "tanh", torch.Tensor.tanh: "tanh",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.Tensor.sigmoid: "sigmoid",
    F.gelu: "GELU", F.silu: "SiLU", F.elu: "ELU", F.selu: "SELU", F.celu: "CELU",
    F.softplus: "softplus", F.softmax: "softmax", F.log_softmax: "log-softmax",
    F.hardtanh: "hardtanh", F.relu6: "ReLU6", F.mish: "Mish", F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid", F.max_pool1d: "max pooling", F.max_pool2d: "max pooling",
    F.max_pool3d: "max pooling", torch.exp: "exp", torch.log: "log", torch.abs: "abs",
    torch.clamp: "clamp", torch.Tensor.clamp: "clamp", torch.maximum: "maximum",
    torch.minimum: "minimum", F.dropout: "dropout (in training mode)",
}


class UnsupportedNonlinearity(TypeError):
    """The network uses an operation the piecewise linear analysis cannot follow."""


@dataclass
class ActivationRecord:
    """What one traced forward pass saw: each ReLU call's mask (in call order) and, under
    forward-mode AD, the distance along the tangent to the nearest zero crossing."""

    masks: list[torch.Tensor] = field(default_factory=list)
    next_crossing: torch.Tensor | None = None  # (B,): min over units heading for zero of -z/dz

    def flat_masks(self) -> torch.Tensor:
        """(B, n_units) bool: the activation pattern over all calls."""
        return torch.cat([m.flatten(1) for m in self.masks], dim=1)


class PiecewiseLinearTrace(TorchFunctionMode):
    """Intercept activations during a forward pass; see the module docstring."""

    def __init__(self, rel_tol: float = 0.0):
        super().__init__()
        self.rel_tol = rel_tol
        self.record = ActivationRecord()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU or func in _LEAKY:
            z = args[0]
            slope = 0.0
            if func in _LEAKY:
                slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)
            primal, tangent = fwAD.unpack_dual(z)
            primal = primal.detach()
            scale = primal.abs().flatten(1).amax(1).view(-1, *[1] * (primal.dim() - 1))
            at_zero = primal.abs() <= self.rel_tol * scale
            above = primal > self.rel_tol * scale
            if tangent is not None:
                tangent = tangent.detach()
                above = above | (at_zero & (tangent > 0))
                heading = ~at_zero & (primal * tangent < 0)
                steps = torch.where(heading, -primal / tangent, torch.inf).flatten(1).amin(1)
                best = self.record.next_crossing
                self.record.next_crossing = steps if best is None else torch.minimum(best, steps)
            self.record.masks.append(above)
            gain = above.to(z.dtype) if slope == 0.0 else above.to(z.dtype) * (1 - slope) + slope
            return z * gain
        if func in _REFUSED:
            if func is F.dropout and not kwargs.get("training", args[2] if len(args) > 2 else True):
                return func(*args, **kwargs)
            raise UnsupportedNonlinearity(
                f"the network calls {_REFUSED[func]}: the linear-region analysis needs a piecewise "
                "linear network (conv, transposed conv, linear, ReLU / LeakyReLU, concatenation, "
                "addition, fixed affine layers)")
        return func(*args, **kwargs)


def activation_pattern(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The activation pattern at ``x``: a bool tensor (B, n_units), one entry per ReLU output
    (in the order the network computes them), True where the unit is active (z > 0).

    Example::

        >>> from lib.models import ChenCNN
        >>> activation_pattern(ChenCNN(), torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 24576])
    """
    trace = PiecewiseLinearTrace()
    with torch.no_grad(), trace:
        model(x)
    if not trace.record.masks:
        raise UnsupportedNonlinearity("the network has no ReLU or LeakyReLU: nothing to trace")
    return trace.record.flat_masks()


def traced_jvp(model: torch.nn.Module, x: torch.Tensor, direction: torch.Tensor,
               rel_tol: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, ActivationRecord]:
    """One forward-mode pass: ``(H(x), J_x direction, record)`` with the right-continuous mask."""
    trace = PiecewiseLinearTrace(rel_tol)
    with torch.no_grad(), fwAD.dual_level():
        with trace:
            out = model(fwAD.make_dual(x, direction))
        primal, tangent = fwAD.unpack_dual(out)
    return primal, tangent, trace.record


class FixedPattern(TorchFunctionMode):
    """Run a network with every activation frozen to a recorded pattern.

    Each ReLU / LeakyReLU call multiplies its input by the gain of the recorded mask (broadcast
    over the batch), so the network becomes the affine map ``u -> J u + c`` of the linear region
    the masks came from; ``J p = f(p) - f(0)`` then needs one plain forward pass per batch.
    """

    def __init__(self, masks: list[torch.Tensor]):
        super().__init__()
        self.masks = masks
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU or func in _LEAKY:
            slope = 0.0
            if func in _LEAKY:
                slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)
            mask = self.masks[self.calls]
            self.calls += 1
            z = args[0]
            gain = mask.to(z.dtype) if slope == 0.0 else mask.to(z.dtype) * (1 - slope) + slope
            return z * gain
        return func(*args, **kwargs)


def local_linear_map(model: torch.nn.Module, x: torch.Tensor):
    """``v -> J_x v`` for batches of directions ``v`` (shaped like ``x``), from one traced pass.

    Refuses networks that are not piecewise linear (the trace does).
    """
    trace = PiecewiseLinearTrace()
    with torch.no_grad(), trace:
        model(x)
    masks = trace.record.masks

    def apply(v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), FixedPattern(masks):
            out = model(torch.cat([torch.zeros_like(v[:1]), v]))
        return out[1:] - out[:1]

    return apply
