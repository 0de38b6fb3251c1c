"""Following a network's forward pass op by op, and refusing what is not exactly piecewise linear.

A :class:`torch.overrides.TorchFunctionMode` sees every torch call of a forward pass. It tracks
which tensors depend on the input (the input itself and every result computed from it) and lets
such tensors through only the operations on an allow-list of maps known to be exactly linear or
affine in them (convolutions, transposed convolutions, linear layers, sums, concatenation,
indexing and reshapes, scaling by a constant, average pooling, padding, resampling, BatchNorm in
eval mode).
ReLU and LeakyReLU calls (``F.relu``, ``torch.relu``, ``Tensor.relu``, ``F.leaky_relu``) are
recorded: each call's pre-activation ``z`` (and, under forward-mode AD, its tangent ``dz``), and
the activation is applied as ``z * mask`` with the mask of the trace's choosing. Anything else
that touches the input - tanh, PReLU, Threshold, max pooling, normalisation by the input's own
statistics, ``abs``, ``x * x``, ``torch.max(a, b)``, a product of two branches - raises
:class:`UnsupportedNonlinearity` naming the operation. Operations on constants only (weights,
buffers) are not restricted: they cannot make the map from input to output nonlinear.

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
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

T = torch.Tensor
_RELU = {F.relu, torch.relu, T.relu, F.relu_, torch.relu_, T.relu_}
_LEAKY = {F.leaky_relu, F.leaky_relu_}
#: Linear in their first argument when the weights do not depend on the input.
_LAYERS = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    torch.conv1d, torch.conv2d, torch.conv3d, torch.conv_transpose1d, torch.conv_transpose2d,
    torch.conv_transpose3d, F.linear,
}
#: Linear in every input-dependent argument (a sum of such terms is linear too).
_LINEAR = {
    F.pad, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.pixel_shuffle,
    F.pixel_unshuffle, F.interpolate,
    torch.add, T.add, T.add_, T.__add__, T.__radd__, T.__iadd__,
    torch.sub, T.sub, T.sub_, T.__sub__, T.__rsub__, T.__isub__,
    torch.neg, T.neg, T.__neg__, T.__pos__,
    torch.cat, torch.concat, torch.stack, torch.flatten, torch.reshape, torch.squeeze,
    torch.unsqueeze, torch.permute, torch.transpose, torch.narrow, torch.select, torch.chunk,
    torch.split, torch.sum, torch.mean, torch.clone,
    T.__getitem__, T.view, T.view_as, T.reshape, T.reshape_as, T.flatten, T.unflatten, T.permute,
    T.transpose, T.squeeze, T.unsqueeze, T.contiguous, T.clone, T.expand, T.expand_as, T.narrow,
    T.select, T.chunk, T.split, T.repeat, T.sum, T.mean, T.to, T.double, T.float, T.half,
    T.type_as, T.cpu, T.cuda,
}
#: Linear when at most one factor depends on the input (scaling by a constant).
_PRODUCT = {torch.mul, T.mul, T.mul_, T.__mul__, T.__rmul__, T.__imul__}
#: Linear when only the numerator depends on the input (and nothing is rounded).
_QUOTIENT = {torch.div, T.div, T.div_, T.__truediv__, T.__itruediv__}
#: Facts about a tensor that do not depend on its values.
_METADATA = {T.dim, T.size, T.numel, T.__len__, T.stride, T.is_contiguous, T.is_floating_point,
             T.shape.__get__, T.ndim.__get__, T.dtype.__get__, T.device.__get__,
             T.requires_grad.__get__, T.is_cuda.__get__, T.layout.__get__}
#: How some refused operations are called in messages, and what to do about them.
_HINTS = {
    F.batch_norm: (("BatchNorm in training mode (it normalises by the batch's own statistics "
                    "and would update the running statistics)"), "call model.eval() first"),
    F.dropout: ("dropout in training mode", "call model.eval() first"),
    F.prelu: ("PReLU", "replace it by LeakyReLU with a fixed slope"),
    torch.prelu: ("PReLU", "replace it by LeakyReLU with a fixed slope"),
    "product": ("a product of two input-dependent values (x * x, a gate, a product of branches)",
                "only scaling by a constant is linear"),
    "quotient": ("a division by an input-dependent value, or a rounded division",
                 "only scaling by a constant is linear"),
}
_SUPPORTED = ("convolutions, transposed convolutions, linear layers, ReLU / LeakyReLU, sums, "
              "concatenation, reshapes and indexing, scaling by a constant, average pooling, "
              "resampling, BatchNorm in eval mode")


class UnsupportedNonlinearity(ValueError):
    """The network uses an operation the piecewise linear analysis cannot follow.

    A ValueError, not a TypeError: Python turns a TypeError raised inside a binary operator
    such as ``x * x`` into "unsupported operand", which would hide the reason."""


_NAMES = {"gelu": "GELU", "silu": "SiLU", "elu": "ELU", "selu": "SELU", "celu": "CELU",
          "relu6": "ReLU6", "mish": "Mish", "_threshold": "threshold (nn.Threshold)",
          "fn": "max pooling", "max_pool2d": "max pooling", "softsign": "Softsign"}


def _name(func) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    return _NAMES.get(name, name.strip("_"))


def check_finite(**tensors) -> None:
    """Raise ``ValueError`` naming the first argument with a NaN or infinite entry."""
    for what, value in tensors.items():
        value = torch.as_tensor(value)
        if not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"{what} has {bad} NaN or infinite entries; the analysis needs "
                             "finite inputs, directions and path ends")


def check_parameters(model: torch.nn.Module) -> None:
    """Raise ``ValueError`` if a parameter or buffer of ``model`` holds NaN or inf."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"the network's {name} holds NaN or infinite values; reload or "
                             "retrain the network")


@dataclass
class ActivationRecord:
    """What one traced forward pass saw: each ReLU call's mask (in call order) and, under
    forward-mode AD, the distance along the tangent to the nearest zero crossing."""

    masks: list[torch.Tensor] = field(default_factory=list)
    next_crossing: torch.Tensor | None = None  # (B,): min over units heading for zero of -z/dz

    def flat_masks(self, batch: int = 1) -> torch.Tensor:
        """(B, n_units) bool: the activation pattern over all calls (n_units = 0 without any)."""
        if not self.masks:
            return torch.zeros(batch, 0, dtype=torch.bool)
        return torch.cat([m.flatten(1) for m in self.masks], dim=1)


class PiecewiseLinearTrace(TorchFunctionMode):
    """Follow a forward pass from ``inputs``: record activations, refuse what is not on the
    allow-list (see the module docstring)."""

    def __init__(self, inputs: torch.Tensor, rel_tol: float = 0.0):
        super().__init__()
        self.rel_tol = rel_tol
        self.record = ActivationRecord()
        self.derived = WeakIdKeyDictionary()
        self.derived[inputs] = True

    def _depends(self, value) -> bool:
        return isinstance(value, torch.Tensor) and value in self.derived

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves = tree_flatten((args, kwargs))[0]
        dependent = [self._depends(v) for v in leaves]
        if not any(dependent) or func in _METADATA:
            return func(*args, **kwargs)
        if func in _RELU or func in _LEAKY:
            out = self._activation(func, args, kwargs)
        else:
            self._refuse_unless_linear(func, args, kwargs, dependent)
            out = func(*args, **kwargs)
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.derived[value] = True
        return out

    def _refuse_unless_linear(self, func, args, kwargs, dependent) -> None:
        if func in _LINEAR:
            return
        alone = sum(dependent) == 1
        if func in _LAYERS and self._depends(args[0]) and alone:
            return
        if func in _PRODUCT and alone:
            return
        if (func in _QUOTIENT and self._depends(args[0]) and alone
                and kwargs.get("rounding_mode") is None):
            return
        training = kwargs.get("training", args[5] if len(args) > 5 else False)
        if func is F.batch_norm and not training:
            return
        if func is F.dropout and not kwargs.get("training", args[2] if len(args) > 2 else True):
            return
        key = ("product" if func in _PRODUCT | _LAYERS else "quotient" if func in _QUOTIENT
               else func)
        what, todo = _HINTS.get(key, (_name(func), "replace it or analyse a network without it"))
        raise UnsupportedNonlinearity(
            f"the network uses {what} on its input; the exact "
            f"linear-region analysis follows only operations known to be piecewise linear "
            f"({_SUPPORTED}): {todo}")

    def _activation(self, func, args, kwargs):
        z = args[0]
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
        return _gated(func, args, kwargs, above)


def _gated(func, args, kwargs, mask: torch.Tensor) -> torch.Tensor:
    """ReLU / LeakyReLU of ``args[0]`` with the given activation mask: ``z * gain``."""
    z = args[0]
    slope = 0.0
    if func in _LEAKY:
        slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)
    gain = mask.to(z.dtype) if slope == 0.0 else mask.to(z.dtype) * (1 - slope) + slope
    return z * gain


def _run(model: torch.nn.Module, x: torch.Tensor, trace: PiecewiseLinearTrace):
    """``model(x)`` under ``trace``; a failure of the network on ``x`` names the input's shape."""
    check_parameters(model)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.training:
            what, todo = _HINTS[F.batch_norm]
            raise UnsupportedNonlinearity(f"the network has {what}: {todo}")
    try:
        with trace:
            return model(x)
    except RuntimeError as err:
        raise ValueError(f"the network cannot run on an input of shape {tuple(x.shape)} ({err}); "
                         "give it what it takes: (B, 1, H, W) mu images, or (B, 1, D, H, W) "
                         "slabs for slab networks such as CPCE3D") from err


def _traced_pass(model: torch.nn.Module, x: torch.Tensor) -> ActivationRecord:
    """The activation record of one plain forward pass at ``x`` (finite inputs only)."""
    check_finite(x=x)
    x = x.detach()
    trace = PiecewiseLinearTrace(x)
    with torch.no_grad():
        _run(model, x, trace)
    return trace.record


def activation_pattern(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The activation pattern at ``x``: a bool tensor (B, n_units), one entry per ReLU output
    (in the order the network computes them), True where the unit is active (z > 0). A network
    without ReLUs is affine: its pattern has no units.

    Example::

        >>> from lib.models import ChenCNN
        >>> activation_pattern(ChenCNN(), torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 24576])
    """
    return _traced_pass(model, x).flat_masks(x.shape[0])


def traced_jvp(model: torch.nn.Module, x: torch.Tensor, direction: torch.Tensor,
               rel_tol: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, ActivationRecord]:
    """One forward-mode pass: ``(H(x), J_x direction, record)`` with the right-continuous mask.

    Without ReLUs ``record.next_crossing`` is infinite (one region)."""
    with torch.no_grad(), fwAD.dual_level():
        dual = fwAD.make_dual(x, direction)
        trace = PiecewiseLinearTrace(dual, rel_tol)
        primal, tangent = fwAD.unpack_dual(_run(model, dual, trace))
    if trace.record.next_crossing is None:
        trace.record.next_crossing = torch.full((x.shape[0],), torch.inf, dtype=torch.float64,
                                                device=x.device)
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
            mask = self.masks[self.calls]
            self.calls += 1
            return _gated(func, args, kwargs, mask)
        return func(*args, **kwargs)


def local_linear_map(model: torch.nn.Module, x: torch.Tensor):
    """``v -> J_x v`` for batches of directions ``v`` (shaped like ``x``), from one traced pass.

    Refuses networks that are not piecewise linear (the trace does).
    """
    masks = _traced_pass(model, x).masks

    def apply(v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), FixedPattern(masks):
            out = model(torch.cat([torch.zeros_like(v[:1]), v]))
        return out[1:] - out[:1]

    return apply
