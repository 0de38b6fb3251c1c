"""Invariance models: the pixel cINN (invertibility, log-determinant, conditioning), layer
features, resumable training, and the shipped models against their recipes."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from lib.ct.units import MU_WATER
from lib.invariance import (
    ConditionalINN,
    InvarianceConfig,
    count_layers,
    layer_output,
    negative_log_likelihood,
    train_sampler,
)
from lib.invariance.cvae import ConditionalVAE
from lib.invariance.training import CVAEConfig
from lib.models import WGANVGG, ChenCNN

F64 = torch.float64


def small_inn(patch=4, channels=3):
    torch.manual_seed(0)
    inn = ConditionalINN(patch, (channels, 4, 4), embed_dim=8, n_blocks=3, hidden=16).double()
    with torch.no_grad():  # ActNorm initialises on its first batch
        inn(torch.rand(32, 1, patch, patch, dtype=F64) * 0.02,
            torch.randn(32, channels, 4, 4, dtype=F64))
    return inn


def test_the_cinn_inverts_to_rounding():
    inn = small_inn()
    x = torch.rand(5, 1, 4, 4, dtype=F64) * 0.02
    features = torch.randn(5, 3, 4, 4, dtype=F64)
    v, _ = inn(x, features)
    assert torch.allclose(inn.reverse(v, features), x, atol=1e-12)
    assert torch.allclose(inn(inn.reverse(v, features), features)[0], v, atol=1e-10)
    with pytest.raises(ValueError, match="4 x 4 patches"):
        inn(torch.zeros(1, 1, 8, 8, dtype=F64), features[:1])


def test_the_log_determinant_matches_autograd():
    inn = small_inn(patch=2, channels=2)
    features = torch.randn(1, 2, 4, 4, dtype=F64)
    x = torch.rand(1, 1, 2, 2, dtype=F64) * 0.02
    J = torch.autograd.functional.jacobian(lambda q: inn(q.view(1, 1, 2, 2), features)[0][0],
                                           x.flatten())
    _, log_det = inn(x, features)
    # log_det is of v with respect to x / mu_water: J (against x) has n log(1 / mu_water) more
    expected = float(torch.linalg.slogdet(J)[1]) + 4 * math.log(MU_WATER)
    assert float(log_det.detach()) == pytest.approx(expected, abs=1e-8)
    nll = negative_log_likelihood(*inn(x, features))
    assert nll.shape == () and torch.isfinite(nll)


def test_the_condition_changes_the_samples():
    inn = small_inn()
    g = torch.Generator().manual_seed(3)
    a = inn.sample(4, torch.randn(1, 3, 4, 4, dtype=F64), generator=g)
    g = torch.Generator().manual_seed(3)
    b = inn.sample(4, torch.randn(1, 3, 4, 4, dtype=F64) + 1.0, generator=g)
    assert a.shape == (4, 1, 4, 4) and (a - b).abs().max() > 1e-5


def test_layers_are_counted_as_in_the_paper():
    x = torch.rand(2, 1, 16, 16)
    chen, wgan = ChenCNN(width=8), WGANVGG()
    assert count_layers(chen, x) == 5 and count_layers(wgan, x) == 15
    assert layer_output(chen, x, 1).shape == (2, 8, 16, 16)  # conv 9x9
    assert layer_output(chen, x, 3).shape == (2, 32, 16, 16)  # conv 3x3 (32)
    assert torch.all(layer_output(chen, x, 2) >= 0)          # ReLU
    with torch.no_grad():
        assert torch.allclose(layer_output(chen, x, 5) * 0.0193, chen(x))  # last conv, unscaled
    with pytest.raises(ValueError, match="no layer 6"):
        layer_output(chen, x, 6)
    with pytest.raises(ValueError, match="from 1"):
        layer_output(chen, x, 0)


def test_configs_say_what_is_missing():
    with pytest.raises(ValueError, match="set network"):
        InvarianceConfig("", layer=1)
    with pytest.raises(ValueError, match="set layer"):
        InvarianceConfig("chen", layer=0)


SMALL = {"steps": 6, "batch_size": 8, "patch_size": 4, "hidden": 8, "embed_dim": 4, "n_train": 2,
         "n_patches": 64, "n_val_patches": 16, "eval_every": 3, "checkpoint_every": 3}


@pytest.mark.parametrize("config", [
    InvarianceConfig("pair-average", 1, n_blocks=2, **SMALL),
    CVAEConfig("pair-average", 1, latent_dim=2, **SMALL),  # its residual scale is checkpointed too
], ids=["cinn", "cvae"])
def test_training_resumes_exactly(tmp_path, config):
    whole = train_sampler(config, tmp_path / "whole.ckpt", device="cpu", progress=False)
    part = tmp_path / "part.ckpt"
    first = train_sampler(config, part, device="cpu", progress=False, stop_after=3)
    assert first.steps_done == 3 and part.exists()
    resumed = train_sampler(config, part, device="cpu", progress=False)
    assert resumed.steps_done == 6 and len(resumed.history) == 2
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    other = dataclasses.replace(config, lr=1e-3)
    with pytest.raises(ValueError, match="different settings.*lr"):
        train_sampler(other, part, device="cpu", progress=False)
    assert isinstance(resumed.model, nn.Module)
    if isinstance(config, CVAEConfig):
        assert isinstance(resumed.model, ConditionalVAE) and resumed.model.scale > 0


def test_every_shipped_invariance_model_is_verified_and_works():
    from lib.invariance import load_sampler
    from lib.invariance.ship import RECIPES
    from lib.invariance.training import CVAEConfig, denoiser
    from lib.checkpoints import read_manifest

    manifest = read_manifest()
    assert set(RECIPES) <= set(manifest), "ship every recipe: python -m lib.invariance all --ship"
    stale = {k for k in manifest if k.startswith("inv-")} - set(RECIPES)
    assert not stale, f"remove invariance models no recipe makes: {sorted(stale)}"
    for name, config in RECIPES.items():
        assert manifest[name]["command"].startswith("python -m lib.invariance")
        assert manifest[name]["config"] == dataclasses.asdict(config), f"{name}: recipe changed"
        x = torch.rand(2, 1, config.patch_size, config.patch_size) * 0.02
        model = load_sampler(name)
        features = layer_output(denoiser(config.network), x, config.layer)
        with torch.no_grad():
            if isinstance(config, CVAEConfig):  # a cVAE: reconstructs, and is no cINN
                assert manifest[name]["architecture"] == "invariance-cvae"
                assert model(x, features).reconstruction.shape == x.shape, name
                continue
            v, _ = model(x, features)
            assert torch.allclose(model.reverse(v, features), x, atol=1e-5), name
