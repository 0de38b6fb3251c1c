"""Local linearity of piecewise linear denoisers: patterns, regions, Jacobians.

- :func:`activation_pattern` - which units are active at an input (module or functional ReLUs)
- :func:`enumerate_regions` - every linear region along a line, exactly (breakpoint walk)
- :func:`distance_to_boundary` - how far a line stays in the region it starts in (its first
  breakpoint)
- :func:`sample_patterns` - the seed paper's sampled view (patterns at a fixed increment)
- :func:`jacobian`, :func:`sparse_jacobian` - exact Jacobians by receptive-field probing
- :func:`jacobian_row` - one output pixel's equivalent filter (one VJP)
- :func:`linearize` - ``H(x0) + J0 (x - x0)`` by one JVP
- :func:`linearization_errors`, :func:`greedy_cover` - approximately linear regions over a plane
  of inputs, and operating points that cover it
- :func:`local_svd`, :func:`randomized_svd` - the SVD of a local Jacobian, dense or matrix-free
- :func:`power_iteration` - its top singular pair, by JVP / VJP
- :mod:`lib.linearity.noise_transfer` - noise through a network and through its linear system
- :mod:`lib.linearity.checks` - checks of the chapters' claims that can fail (``check_*``)

Networks with other nonlinearities are refused (:class:`UnsupportedNonlinearity`).
"""

from lib.linearity.approximate import (Cover, ErrorTable, Serving, cover_lower_bound,
                                       greedy_cover, linearization_errors, percent_error,
                                       percent_error_map, regions_against_threshold)
from lib.linearity.jacobian import Linearization, jacobian, jacobian_row, linearize, sparse_jacobian
from lib.linearity.regions import (RegionWalk, SampledPath, distance_to_boundary,
                                   enumerate_regions, pattern_hash, sample_patterns)
from lib.linearity.svd import LocalSVD, local_svd, power_iteration, randomized_svd
from lib.linearity.tracing import UnsupportedNonlinearity, activation_pattern

__all__ = ["activation_pattern", "enumerate_regions", "distance_to_boundary", "sample_patterns",
           "RegionWalk", "SampledPath", "pattern_hash", "jacobian", "sparse_jacobian", "jacobian_row",
           "linearize", "Linearization", "UnsupportedNonlinearity", "percent_error",
           "percent_error_map", "linearization_errors", "ErrorTable", "greedy_cover", "Cover",
           "Serving", "cover_lower_bound", "regions_against_threshold",
           "local_svd", "randomized_svd", "power_iteration", "LocalSVD"]
