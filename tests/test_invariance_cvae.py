"""The conditional VAE of chapter 7 and the measures on invariance samples: free bits keep the
latent in use, the collapse check fails on a collapsed model, and the masks and the feature
mismatch are right on cases known in closed form."""

import copy

import pytest
import torch

from lib.invariance import PairAverage, pair_difference_basis, train_sampler, variance_fraction
from lib.invariance.cvae import (ConditionalVAE, ELBOTerms, check_not_collapsed, free_bits_loss,
                                 latent_usage)
from lib.invariance.layers import layer_output
from lib.invariance.measures import (edge_and_homogeneous, feature_mismatch, measure_patch,
                                     noise_let_through, region_means)
from lib.invariance.training import CVAEConfig

HU = 1000 / 0.0193


def tiny_config():
    return CVAEConfig("pair-average", 1, steps=600, batch_size=64, patch_size=4, hidden=64,
                      embed_dim=16, latent_dim=8, free_bits=1.0, n_train=2, n_patches=2048,
                      n_val_patches=64, eval_every=600, checkpoint_every=600)


@pytest.fixture(scope="module")
def pair_average_cvae():
    return train_sampler(tiny_config(), None, device="cpu", progress=False).model


def patches(n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g) * 0.02 + 0.01


def usage_and_spread(model, x):
    features = layer_output(PairAverage(), x, 1)
    usage = latent_usage(model, x, features)
    with torch.no_grad():
        samples = model.sample(128, features[:1], generator=torch.Generator().manual_seed(0))
    return usage, float(samples.std(0).mean()) * HU, samples


def test_the_cvae_uses_its_latent_and_samples_the_known_invariance(pair_average_cvae):
    x = patches()
    usage, spread, samples = usage_and_spread(pair_average_cvae, x)
    assert usage.active_dims > 0 and usage.kl_nats > 1
    check_not_collapsed(usage, spread, min_spread_hu=1.0)
    assert variance_fraction(samples, pair_difference_basis(4, 4)) > 0.9
    with torch.no_grad():  # temperature 0: every sample is the decoder mean at z = 0
        frozen = pair_average_cvae.sample(8, layer_output(PairAverage(), x[:1], 1), temperature=0)
    assert float(frozen.std(0).max()) == 0


def test_the_collapse_check_fails_when_the_latent_is_cut(pair_average_cvae):
    x = patches()
    cut = copy.deepcopy(pair_average_cvae)
    with torch.no_grad():  # the decoder no longer reads z: the samples cannot vary
        cut.decoder[0].weight[:, :cut.latent_dim] = 0
    usage, spread, _ = usage_and_spread(cut, x)
    assert spread < 1e-3
    with pytest.raises(ValueError, match="collapsed.*spread"):
        check_not_collapsed(usage, spread, min_spread_hu=1.0)
    prior = copy.deepcopy(pair_average_cvae)
    with torch.no_grad():  # the posterior is the prior: q(z | x, c) = N(0, I)
        prior.encoder[-1].weight.zero_()
        prior.encoder[-1].bias.zero_()
    usage, spread, _ = usage_and_spread(prior, x)
    assert usage.kl_nats == 0 and usage.active_dims == 0
    with pytest.raises(ValueError, match="collapsed.*KL.*no active"):
        check_not_collapsed(usage, spread, min_spread_hu=1.0)


def test_free_bits_put_a_floor_under_each_dimension():
    terms = ELBOTerms(torch.zeros(3), torch.tensor([0.0, 0.2, 3.0], requires_grad=True),
                      torch.zeros(3, 3), torch.zeros(3, 1, 1, 1))
    loss = free_bits_loss(terms, 0.5)
    assert float(loss.detach()) == pytest.approx(0.5 + 0.5 + 3.0)
    loss.backward()  # no gradient pushes a dimension below its floor
    assert terms.kl_per_dimension.grad.tolist() == [0.0, 0.0, 1.0]
    assert float(free_bits_loss(terms, 0.0).detach()) == pytest.approx(3.2)  # without: the plain ELBO
    with pytest.raises(ValueError, match="free bits"):
        free_bits_loss(terms, -1.0)


def test_the_cvae_refuses_wrong_patches_and_an_untrained_scale():
    model = ConditionalVAE(4, (1, 4, 4), embed_dim=8, latent_dim=2, hidden=8).eval()
    features = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="untrained"):
        model(patches(2), features)
    with pytest.raises(ValueError, match="4 x 4 patches"):
        model(torch.zeros(2, 1, 8, 8), features)


def test_masks_follow_the_truth_and_region_means_pair_them():
    truth = torch.zeros(8, 8)
    truth[:, 4:] = 1.0  # one vertical edge between columns 3 and 4
    edges, flat = edge_and_homogeneous(truth)
    assert edges[:, 3:5].all() and not edges[:, :2].any() and flat[:, :2].all()
    assert not (edges & flat).any()
    std = torch.where(edges, 2.0, 1.0)
    assert region_means([std], [(edges, flat)]) == ([1.0], [2.0])
    with pytest.raises(ValueError, match="not overlap"):
        edge_and_homogeneous(truth, 0.6, 0.6)


def test_the_feature_mismatch_is_zero_for_invariances_and_not_otherwise():
    net, x = PairAverage(), patches(1)
    noise = torch.randn(16, 1, 4, 4) * 0.001
    d = pair_difference_basis(4, 4).float().view(-1, 1, 4, 4)[:8] * 0.001
    assert feature_mismatch(net, x, x + d, noise, 1) < 1e-5  # pair differences: unseen
    assert feature_mismatch(net, x, x + noise.flip(0), noise, 1) > 0.5  # noise: seen


def test_measure_patch_splits_the_spread_at_the_null_space(pair_average_cvae):
    x = patches(1)
    noise = torch.randn(16, 1, 4, 4) * 0.001
    m = measure_patch(PairAverage(), pair_average_cvae, x, 1, noise, 64,
                      torch.Generator().manual_seed(0))
    assert m.null_dimension == 8 and m.null_fraction > 0.9
    assert m.outside_std_hu < 0.3 * float(m.sample_std.mean())
    assert m.feature_mismatch < 0.3


def test_noise_let_through_is_one_for_the_identity_and_half_for_a_halving():
    truth, noise = torch.zeros(1, 1, 4, 4), torch.randn(8, 1, 4, 4)
    assert torch.allclose(noise_let_through(torch.nn.Identity(), truth, noise), torch.ones(4, 4))
    assert torch.allclose(noise_let_through(lambda x: 0.5 * x, truth, noise), torch.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="at least 2"):
        noise_let_through(torch.nn.Identity(), truth, noise[:1])
