"""The validation of chapter 7's invariance pipeline: cuts, exact null spaces, and the
synthetic network with a known invariance - each check is shown to fail on a broken input."""

import copy

import pytest
import torch

from lib.invariance import (
    InvarianceConfig,
    PairAverage,
    cut_error,
    null_space,
    pair_difference_basis,
    train_sampler,
    valid_cuts,
    variance_fraction,
)
from lib.invariance.layers import layer_output
from lib.models import CPCE2D, REDCNN, ChenCNN


def test_cuts_follow_the_skip_connections():
    torch.manual_seed(0)
    x, other = torch.rand(2, 1, 24, 24) * 0.03, torch.rand(2, 1, 24, 24) * 0.03
    assert valid_cuts(ChenCNN(width=8), x, other) == [1, 2, 3, 4, 5]  # a chain: every cut holds
    assert valid_cuts(REDCNN(width=8), x, other) == []  # the input shortcut crosses every layer
    cuts = valid_cuts(CPCE2D(width=8), x, other)
    assert cuts[:2] == [1, 2] and 3 not in cuts and cuts[-1] == 21
    assert min(c for c in cuts if c > 2) == 18  # after the last conveying path joins


def test_a_cut_error_is_rounding_only_where_nothing_bypasses():
    torch.manual_seed(0)
    net = REDCNN(width=8).double()
    x, other = torch.rand(1, 1, 24, 24, dtype=torch.float64), torch.rand(1, 1, 24, 24,
                                                                          dtype=torch.float64)
    assert cut_error(net, x, other, 5) > 1e-3
    assert cut_error(ChenCNN(width=8).double(), x, other, 3) < 1e-12


def test_the_null_space_of_the_pair_average_is_the_pair_differences():
    x = torch.rand(1, 1, 8, 8) * 0.02 + 0.01
    basis = pair_difference_basis(8, 8)
    ns = null_space(PairAverage(), x, layer=1)
    assert ns.dimension == 32
    overlap = float((ns.null_basis @ basis.T).pow(2).sum()) / 32  # 1: the same subspace
    assert overlap == pytest.approx(1.0, abs=1e-10)
    broken = PairAverage()
    with torch.no_grad():
        broken.average.weight[..., 1] = 0.4  # no longer blind to the pair differences
    moved = null_space(broken, x, layer=1)  # still 32 directions, but not the pair differences
    assert float((moved.null_basis @ basis.T).pow(2).sum()) / 32 < 0.99


def test_layer_one_of_a_denoiser_is_injective_unless_broken():
    torch.manual_seed(0)
    net = ChenCNN()
    x = torch.rand(1, 1, 16, 16) * 0.02
    assert null_space(net, x, layer=1).dimension == 0
    broken = copy.deepcopy(net)
    with torch.no_grad():  # every channel the same 9x9 box blur: many directions lost
        broken.net[1].weight.copy_(torch.ones_like(broken.net[1].weight) / 81)
    assert null_space(broken, x, layer=1).dimension > 0


def test_projection_keeps_null_space_noise_and_removes_the_rest():
    x = torch.rand(1, 1, 8, 8) * 0.02 + 0.01
    ns = null_space(PairAverage(), x, layer=1)
    flat = torch.ones(3, 1, 8, 8, dtype=torch.float64)  # pair averages only: invisible part 0
    assert ns.project(flat).abs().max() < 1e-12
    d = pair_difference_basis(8, 8)[:3].view(3, 1, 8, 8)
    assert torch.allclose(ns.project(d), d, atol=1e-12)
    with pytest.raises(ValueError, match="tau"):
        null_space(PairAverage(), x, layer=1, tau=1.5)


@pytest.fixture(scope="module")
def pair_average_inn():
    config = InvarianceConfig("pair-average", 1, steps=400, patch_size=4, n_blocks=4, hidden=64,
                              embed_dim=16, n_train=2, n_patches=2048, n_val_patches=64,
                              eval_every=400, checkpoint_every=400)
    return train_sampler(config, None, device="cpu", progress=False).model


def test_the_cinn_recovers_the_known_invariance_and_an_untrained_one_does_not(pair_average_inn):
    torch.manual_seed(1)
    x = torch.rand(1, 1, 4, 4) * 0.02 + 0.01
    basis = pair_difference_basis(4, 4)
    features = layer_output(PairAverage(), x, 1)
    with torch.no_grad():
        samples = pair_average_inn.sample(256, features)
    assert variance_fraction(samples, basis) > 0.9
    untrained = copy.deepcopy(pair_average_inn)
    with torch.no_grad():
        for p in untrained.embedding.parameters():
            p.zero_()  # a sampler that ignores the condition: samples vary everywhere
        samples = untrained.sample(256, features)
    assert variance_fraction(samples, basis) < 0.9
    with pytest.raises(ValueError, match="do not vary"):
        variance_fraction(torch.ones(4, 1, 4, 4), basis)


def test_the_layer_one_control_separates_an_injective_layer_from_one_with_invariances():
    from lib import models
    from lib.ct.datasets import PatchDataset, phantom_pairs
    from lib.invariance import load_sampler

    hu = 1000 / 0.0193
    pairs = phantom_pairs("test", 1, progress=False)
    x = PatchDataset(pairs, 16, 1, seed=3)[0][0][None]

    def spread(name, net):
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            samples = load_sampler(name).sample(32, layer_output(net, x, 1), generator=g)
        return float(samples.std(0).mean()) * hu

    threshold = 0.1 * 47  # the chapter's: a tenth of the scanner noise (about 47 HU)
    assert spread("inv-chen-l1", models.load("chen")) < threshold
    assert spread("inv-pair-average-l1", PairAverage()) > threshold  # the check can fail
