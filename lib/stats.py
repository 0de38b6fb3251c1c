"""Bootstrap confidence intervals for the book's summary numbers.

A chapter measures a quantity on n independent items (patches, noise realisations, slices) and
reports its mean, or the ratio of two paired means, with a percentile bootstrap interval: resample
the items with replacement ``n_boot`` times, recompute the statistic, and take the 2.5 and 97.5
percentiles. Paired quantities are resampled together, so a ratio's interval keeps their correlation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """An estimate with its bootstrap interval; formats as ``estimate [low, high]``.

    >>> f"{Interval(1.234, 1.1, 1.4):.2f}"
    '1.23 [1.10, 1.40]'
    """

    estimate: float
    low: float
    high: float

    def __format__(self, spec: str) -> str:
        spec = spec or ".3g"
        return f"{self.estimate:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def side_of(self, value: float = 0.0) -> int:
        """+1 if the whole interval lies above ``value``, -1 if below, 0 if it contains it.

        >>> Interval(0.4, 0.1, 0.7).side_of(0.0), Interval(0.4, -0.1, 0.7).side_of(0.0)
        (1, 0)
        """
        return 1 if self.low > value else -1 if self.high < value else 0


def bootstrap(values, over=None, n_boot: int = 2000, seed: int = 0,
              level: float = 0.95) -> Interval:
    """Mean of ``values`` (or ratio of means ``values / over``, paired) with a bootstrap interval.

    ``values`` and ``over`` are 1-D, one entry per independent item.

    >>> bootstrap([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]).estimate
    0.5
    """
    a = np.asarray(values, dtype=float)
    b = None if over is None else np.asarray(over, dtype=float)
    if a.ndim != 1 or len(a) < 2:
        raise ValueError(f"values must be 1-D with at least 2 items, got shape {a.shape}")
    if b is not None and b.shape != a.shape:
        raise ValueError(f"over must pair with values: shapes {b.shape} and {a.shape} differ")
    if not np.isfinite(a).all() or (b is not None and not np.isfinite(b).all()):
        raise ValueError("values and over must be finite")
    if b is None:
        def statistic(idx):
            return a[idx].mean(-1)
    else:
        if b.mean() == 0:
            raise ValueError("the mean of over is zero: the ratio is undefined")

        def statistic(idx):
            return a[idx].mean(-1) / b[idx].mean(-1)
    return bootstrap_statistic(statistic, len(a), n_boot, seed, level, vectorised=True)


def bootstrap_statistic(statistic, n_items: int, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95, vectorised: bool = False) -> Interval:
    """Any ``statistic`` of n items with a percentile bootstrap interval.

    ``statistic(indices)`` computes the statistic on the items at ``indices``: a 1-D integer array
    of length ``n_items`` (a resample; the estimate uses ``arange(n_items)``). With ``vectorised``
    it takes all resamples at once, a (n_boot, n_items) array, and returns n_boot values.

    >>> values = np.array([1.0, 2.0, 3.0, 4.0])
    >>> bootstrap_statistic(lambda i: np.median(values[i]), 4).estimate
    2.5
    """
    if n_items < 2:
        raise ValueError(f"need at least 2 items to resample, got {n_items}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100 for a percentile interval, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    idx = np.random.default_rng(seed).integers(n_items, size=(n_boot, n_items))
    estimate = float(statistic(np.arange(n_items)))
    stats = np.asarray(statistic(idx) if vectorised else [statistic(row) for row in idx], float)
    tail = 50 * (1 - level)
    low, high = np.percentile(stats, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high))
