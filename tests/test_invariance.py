"""Invariance models: the conditional INN (invertibility, log-determinant, conditioning), the VAE,
layer features, and resumable training."""

import dataclasses

import pytest
import torch
from torch import nn

from lib.invariance import (ConditionalINN, InvarianceConfig, PatchVAE, count_layers,
                            layer_output, negative_log_likelihood, train)
from lib.models import ChenCNN, WGANVGG

F64 = torch.float64


def small_inn(latent=6, channels=3):
    torch.manual_seed(0)
    inn = ConditionalINN(latent, channels, embed_dim=8, n_blocks=3, hidden=16).double()
    with torch.no_grad():  # ActNorm initialises on its first batch
        inn(torch.randn(32, latent, dtype=F64), torch.randn(32, channels, 8, 8, dtype=F64))
    return inn


def test_the_cinn_inverts_to_rounding():
    inn = small_inn()
    z = torch.randn(5, 6, dtype=F64)
    features = torch.randn(5, 3, 8, 8, dtype=F64)
    v, _ = inn(z, features)
    assert torch.allclose(inn.reverse(v, features), z, atol=1e-12)
    assert torch.allclose(inn(inn.reverse(v, features), features)[0], v, atol=1e-12)


def test_the_log_determinant_matches_autograd():
    inn = small_inn(latent=4, channels=2)
    features = torch.randn(1, 2, 8, 8, dtype=F64)
    z = torch.randn(1, 4, dtype=F64)
    J = torch.autograd.functional.jacobian(lambda q: inn(q[None], features)[0][0], z[0])
    _, log_det = inn(z, features)
    assert float(log_det.detach()) == pytest.approx(float(torch.linalg.slogdet(J)[1]), abs=1e-10)
    nll = negative_log_likelihood(*inn(z, features))
    assert nll.shape == () and torch.isfinite(nll)


def test_the_condition_changes_the_samples():
    inn = small_inn()
    g = torch.Generator().manual_seed(3)
    a = inn.sample(4, torch.randn(1, 3, 8, 8, dtype=F64), generator=g)
    g = torch.Generator().manual_seed(3)
    b = inn.sample(4, torch.randn(1, 3, 8, 8, dtype=F64) + 1.0, generator=g)
    assert a.shape == (4, 6) and (a - b).abs().max() > 1e-3


def test_vae_shapes_and_the_conditional_variant():
    vae = PatchVAE(32, latent_dim=8, width=8).eval()
    x = torch.rand(3, 1, 32, 32) * 0.02
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (3, 8)
    recon, m, _ = vae(x)
    assert recon.shape == x.shape and torch.equal(m, mean)
    assert torch.equal(vae(x)[0], recon)  # eval mode decodes the mean
    assert vae.sample(5).shape == (5, 1, 32, 32)
    cvae = PatchVAE(32, latent_dim=8, width=8, condition=True).eval()
    assert cvae(x, x)[0].shape == x.shape
    assert cvae.sample(4, x[:1]).shape == (4, 1, 32, 32)
    with pytest.raises(ValueError, match="needs the denoised patch"):
        cvae.encode(x)
    with pytest.raises(ValueError, match="multiple of 16"):
        PatchVAE(30)
    with pytest.raises(ValueError, match="32 x 32 patches"):
        vae.encode(torch.zeros(1, 1, 16, 16))


def test_layers_are_counted_as_in_the_paper():
    x = torch.rand(2, 1, 16, 16)
    chen, wgan = ChenCNN(width=8), WGANVGG()
    assert count_layers(chen, x) == 5 and count_layers(wgan, x) == 15
    assert layer_output(chen, x, 1).shape == (2, 8, 16, 16)  # conv 9x9
    assert layer_output(chen, x, 3).shape == (2, 32, 16, 16)  # conv 3x3 (32)
    assert torch.all(layer_output(chen, x, 2) >= 0)          # ReLU
    with torch.no_grad():
        assert torch.allclose(layer_output(chen, x, 5) * 0.0193, chen(x))  # last conv, before scaling
    with pytest.raises(ValueError, match="no layer 6"):
        layer_output(chen, x, 6)
    with pytest.raises(ValueError, match="from 1"):
        layer_output(chen, x, 0)


def test_configs_say_what_is_missing():
    with pytest.raises(ValueError, match="set network"):
        InvarianceConfig("cinn", layer=1)
    with pytest.raises(ValueError, match="set layer"):
        InvarianceConfig("cinn", network="chen")
    with pytest.raises(ValueError, match="unknown kind"):
        InvarianceConfig("gan")


def test_training_resumes_exactly(tmp_path):
    config = InvarianceConfig("vae", steps=6, batch_size=8, patch_size=16, latent_dim=4,
                              n_train=2, n_patches=64, n_val_patches=16, eval_every=3,
                              checkpoint_every=3)
    whole = train(config, tmp_path / "whole.ckpt", device="cpu", progress=False)
    part = tmp_path / "part.ckpt"
    first = train(config, part, device="cpu", progress=False, stop_after=3)
    assert first.steps_done == 3 and part.exists()
    resumed = train(config, part, device="cpu", progress=False)
    assert resumed.steps_done == 6 and len(resumed.history) == 2
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    other = InvarianceConfig("vae", steps=7, batch_size=8, patch_size=16, latent_dim=4,
                             n_train=2, n_patches=64, n_val_patches=16)
    with pytest.raises(ValueError, match="another configuration"):
        train(other, part, device="cpu", progress=False)
    assert isinstance(resumed.model, nn.Module)


def test_every_shipped_invariance_model_is_verified_and_works():
    from lib.invariance import load
    from lib.invariance.ship import RECIPES
    from lib.models import load as load_denoiser
    from lib.models.registry import read_manifest

    manifest = read_manifest()
    assert set(RECIPES) <= set(manifest), "ship every recipe: python -m lib.invariance all --ship"
    x = torch.rand(2, 1, 32, 32) * 0.02
    vae = load("inv-vae")
    assert vae.decode(vae.encode(x)[0]).shape == x.shape
    for name, config in RECIPES.items():
        assert manifest[name]["command"].startswith("python -m lib.invariance")
        assert manifest[name]["config"] == dataclasses.asdict(config), f"{name}: retrain, recipe changed"
        if config.kind != "cinn":
            continue
        inn = load(name)
        features = layer_output(load_denoiser(config.network), x, config.layer)
        with torch.no_grad():
            z = vae.encode(x)[0]
            v, _ = inn(z, features)
            assert torch.allclose(inn.reverse(v, features), z, atol=1e-3), name
