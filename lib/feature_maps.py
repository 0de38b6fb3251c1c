"""Feature maps of a CNN layer on an image: kernels, pooling, and sensitivity to a shift.

A kernel ``k`` slid over an image ``x`` gives the feature map of a cross-correlation (torch's
``conv2d``; the kernel is not flipped), ``(x * k)[i, j] = sum_{u,v} x[i+u, j+v] k[u, v]``; max
pooling over ``s x s`` windows keeps each window's largest value. How far a map moves when the
image moves by a pixel is the relative change ``|P(shift x) - P(x)| / |P(x)|``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: Classic 3 x 3 kernels, as nested lists (rows).
EXAMPLE_KERNELS = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "box blur": [[1 / 9] * 3] * 3,
    "vertical edge": [[1, 0, -1]] * 3,
    "horizontal edge": [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],
    "Laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
}


def feature_map(image: torch.Tensor, kernel, pool: int = 1) -> torch.Tensor:
    """The (H, W) ``image`` cross-correlated with a square, odd-sized ``kernel`` (same size out,
    zero padding), then max-pooled over ``pool x pool`` windows (stride ``pool``) when pool > 1.

    >>> feature_map(torch.eye(4), [[0, 0, 0], [0, 2, 0], [0, 0, 0]], pool=2)
    tensor([[2., 0.],
            [0., 2.]])
    """
    k = torch.as_tensor(kernel, dtype=image.dtype, device=image.device)
    if k.dim() != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be square with an odd side, got shape {tuple(k.shape)}")
    if image.dim() != 2:
        raise ValueError(f"image must be (H, W), got shape {tuple(image.shape)}")
    if int(pool) != pool or pool < 1:
        raise ValueError(f"pool must be a positive whole number, got {pool!r}")
    out = F.conv2d(image[None, None], k[None, None], padding=k.shape[0] // 2)
    return (F.max_pool2d(out, int(pool)) if pool > 1 else out)[0, 0]


def shift_sensitivity(image: torch.Tensor, kernel, pools: Sequence[int],
                      shift: int = 1) -> list[float]:
    """Relative change ``|P(shift x) - P(x)| / |P(x)|`` of the pooled feature map
    :func:`feature_map` when ``image`` moves ``shift`` pixels to the right (circularly), one value
    per pooling window in ``pools`` (1: no pooling)."""
    moved = torch.roll(image, shift, dims=1)
    changes = []
    for pool in pools:
        before, after = feature_map(image, kernel, pool), feature_map(moved, kernel, pool)
        changes.append(float((after - before).norm() / before.norm()))
    return changes
