"""Paired datasets: splits, determinism, the on-disk cache, patches, DICOM sources."""

import multiprocessing as mp
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dicom_files import write_series
from lib.ct import MU_WATER
from lib.ct.datasets import (DoseProtocol, PatchDataset, dicom_pairs, fit_to_grid, measured_pairs,
                             phantom_pairs, simulate_pairs, split_seeds)
from lib.paths import ROOT

SMALL = DoseProtocol(size=96, pixel_mm=4.0, n_angles=90)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CTBOOK_CACHE", str(tmp_path / "cache"))


def test_splits_never_share_a_phantom():
    seeds = {s: set(split_seeds(s, 500)) for s in ("train", "validation", "test")}
    assert not seeds["train"] & seeds["validation"]
    assert not seeds["train"] & seeds["test"] and not seeds["validation"] & seeds["test"]
    with pytest.raises(ValueError, match="unknown split"):
        split_seeds("holdout", 3)


def test_a_script_without_a_main_guard_is_told_what_to_do(tmp_path):
    # spawned workers import the calling script; unguarded, each one tries to start workers of its
    # own and dies, which must surface as advice rather than a bare BrokenProcessPool
    script = tmp_path / "unguarded.py"
    script.write_text("from lib.ct.datasets import DoseProtocol, phantom_pairs\n"
                      "phantom_pairs('validation', 2, DoseProtocol(size=64, pixel_mm=6.0, n_angles=60),"
                      " cache=False, progress=False, workers=2)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         check=False, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert run.returncode != 0
    assert 'if __name__ == "__main__":' in run.stderr and "workers=1" in run.stderr


def test_pairs_are_deterministic_and_noisier_at_low_dose():
    a = phantom_pairs("validation", 2, SMALL, cache=False, progress=False)
    b = phantom_pairs("validation", 2, SMALL, cache=False, progress=False)
    assert torch.equal(a.low, b.low) and torch.equal(a.truth, b.truth)
    assert a.low.shape == (2, 96, 96)
    err_low = (a.low - a.truth).pow(2).mean()
    err_normal = (a.normal - a.truth).pow(2).mean()
    assert err_low > err_normal  # at 4 mm pixels the Hann blur is most of both errors


def test_workers_do_not_change_the_pairs(monkeypatch):
    from lib.ct import datasets
    pools = []

    class CountedPool(datasets.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(datasets, "ProcessPoolExecutor", CountedPool)
    serial = phantom_pairs("validation", 3, SMALL, cache=False, progress=False, workers=1)
    assert not pools
    parallel = phantom_pairs("validation", 3, SMALL, cache=False, progress=False, workers=2)
    assert len(pools) == 1  # the pairs did come from two worker processes
    for name in ("low", "normal", "truth"):
        assert torch.equal(getattr(serial, name), getattr(parallel, name))
    rescanned = simulate_pairs(serial.truth, SMALL, serial.seeds, progress=False, workers=2)
    assert torch.equal(rescanned.low, serial.low)
    assert not torch.equal(simulate_pairs(serial.truth, SMALL, [7, 8, 9], progress=False).low,
                           serial.low)  # the noise follows the seeds
    with pytest.raises(ValueError, match="workers must be"):
        phantom_pairs("validation", 1, SMALL, cache=False, workers=0)
    assert len(phantom_pairs("validation", 0, SMALL, cache=False, progress=False)) == 0


def test_cache_round_trip_leaves_no_partial_files(tmp_path):
    first = phantom_pairs("train", 2, SMALL, progress=False)
    files = list((tmp_path / "cache" / "datasets").iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"
    again = phantom_pairs("train", 2, SMALL, progress=False)
    assert torch.equal(first.low, again.low) and again.seeds == first.seeds


def _build(_):
    return phantom_pairs("test", 1, SMALL, progress=False).low.sum().item()


def test_two_processes_building_the_same_cache(tmp_path):
    with mp.get_context("spawn").Pool(2) as pool:
        a, b = pool.map(_build, [0, 1])
    assert a == b
    files = list((tmp_path / "cache" / "datasets").iterdir())
    assert [f.suffix for f in files] == [".pt"]  # one complete file, no temporaries
    assert _build(0) == a


def test_slabs_for_3d_networks():
    pairs = phantom_pairs("train", 1, DoseProtocol(96, 4.0, 90, slab=3), cache=False, progress=False)
    assert pairs.low.shape == (1, 3, 96, 96)
    low, _, _ = PatchDataset(pairs, 32, 4)[0]
    assert low.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="odd"):
        DoseProtocol(slab=2)


def test_patches_are_reproducible_and_avoid_air():
    pairs = phantom_pairs("train", 2, SMALL, progress=False)
    a, b = PatchDataset(pairs, 32, 10, seed=1), PatchDataset(pairs, 32, 10, seed=1)
    for i in range(10):
        assert all(torch.equal(x, y) for x, y in zip(a[i], b[i]))
        assert a[i][2].mean() >= 0.005
    assert not torch.equal(a[0][0], PatchDataset(pairs, 32, 10, seed=2)[0][0])
    with pytest.raises(ValueError, match="does not fit"):
        PatchDataset(pairs, 200, 1)
    with pytest.raises(IndexError):
        a[10]


def test_fit_to_grid_resamples_and_centres():
    mu = torch.full((1, 50, 50), MU_WATER)
    out = fit_to_grid(mu, (2.0, 2.0), size=64, pixel_mm=1.0)  # 100 mm of water in a 64 mm grid
    assert torch.allclose(out, torch.full((1, 64, 64), MU_WATER), atol=1e-6)
    out = fit_to_grid(mu, (1.0, 1.0), size=64, pixel_mm=1.0)  # 50 mm centred in 64 mm of air
    assert float(out[0, 32, 32]) == pytest.approx(MU_WATER) and float(out[0, 0, 0]) == 0.0


def test_pairs_from_a_dicom_series(tmp_path):
    hu = np.zeros((3, 40, 40)) - 1000
    hu[:, 8:32, 8:32] = 0.0  # a block of water
    write_series(tmp_path / "series", hu, spacing_mm=3.0, pixel_mm=2.0)
    pairs = dicom_pairs(tmp_path / "series", SMALL, progress=False)
    assert pairs.low.shape == (3, 96, 96)
    assert float(pairs.truth.max()) == pytest.approx(MU_WATER, rel=1e-3)
    slabs = dicom_pairs(tmp_path / "series", DoseProtocol(96, 4.0, 90, slab=3), progress=False)
    assert slabs.low.shape == (1, 3, 96, 96)
    real = measured_pairs(tmp_path / "series", tmp_path / "series")
    assert torch.equal(real.truth, real.normal)
