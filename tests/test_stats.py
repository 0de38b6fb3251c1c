"""Bootstrap intervals: coverage on a known distribution, pairing, and refusals."""

import numpy as np
import pytest

from lib.stats import Interval, bootstrap


def test_interval_covers_the_true_mean_at_about_the_stated_rate():
    rng = np.random.default_rng(1)
    hits = [bootstrap(rng.exponential(2.0, 40), n_boot=400, seed=k).contains(2.0)
            for k in range(200)]
    assert 0.88 <= np.mean(hits) <= 0.99


def test_pairing_narrows_the_ratio_interval():
    rng = np.random.default_rng(2)
    shared = rng.lognormal(0, 1, 30)
    a, b = shared * 1.5, shared
    paired = bootstrap(a, b)
    assert paired.estimate == pytest.approx(1.5)
    assert paired.high - paired.low < 1e-9          # a / b is exactly 1.5 item by item
    unpaired = bootstrap(a, rng.permutation(b))
    assert unpaired.high - unpaired.low > 0.1      # breaking the pairing widens it


@pytest.mark.parametrize("args, message", [
    (([1.0],), "at least 2"),
    (([1.0, 2.0], [1.0]), "pair"),
    (([1.0, np.nan],), "finite"),
    (([1.0, 2.0], [0.0, 0.0]), "zero"),
])
def test_refusals(args, message):
    with pytest.raises(ValueError, match=message):
        bootstrap(*args)


def test_format():
    assert f"{Interval(2.0, 1.0, 3.0):.1f}" == "2.0 [1.0, 3.0]"
