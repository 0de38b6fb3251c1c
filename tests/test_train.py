"""Training: metrics, determinism, resumption, multi-process equivalence."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib.ct.units import MU_WATER
from lib.train import TrainConfig, train_denoiser
from lib.train.metrics import image_quality, psnr, rmse_hu, ssim


def tiny_config(**changes):
    settings = {"model": "chen", "steps": 6, "batch_size": 4, "patch_size": 32, "lr": 1e-3,
                "n_train": 2, "n_val": 1, "size": 64, "eval_every": 3, "checkpoint_every": 3}
    return TrainConfig(**(settings | changes))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CTBOOK_CACHE", str(tmp_path / "cache"))


def test_metrics_on_known_cases():
    g = torch.Generator().manual_seed(0)
    x = 0.01 + 0.005 * torch.rand(2, 1, 32, 32, generator=g)
    assert float(ssim(x, x).min()) == pytest.approx(1.0)
    assert float(rmse_hu(x, x).max()) == 0.0
    shifted = x + MU_WATER / 1000  # +1 HU everywhere
    assert float(rmse_hu(shifted, x).mean()) == pytest.approx(1.0, rel=1e-4)
    noisy = x + 0.002 * torch.randn(x.shape, generator=g)
    q = image_quality(noisy, x)
    assert 0 < q["ssim"] < 1 and q["rmse_hu"] > 50
    assert float(psnr(noisy, x).mean()) < float(psnr(x + 0.0005 * (noisy - x), x).mean())


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_training_is_deterministic_and_learns():
    a = train_denoiser(tiny_config(steps=12), progress=False)
    b = train_denoiser(tiny_config(steps=12), progress=False)
    assert torch.equal(weights(a.model), weights(b.model))
    assert [h["step"] for h in a.history] == [3, 6, 9, 12]
    assert a.history[-1]["train"]["mse"] < a.history[0]["train"]["mse"]
    assert "psnr" in a.history[-1]["validation"]


@pytest.mark.parametrize("changes", [{}, {"model": "wganvgg", "loss": "wgan", "warmup_steps": 2,
                                          "critic_steps": 1, "batch_size": 2}],
                         ids=["mse", "wgan"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, changes):
    straight = train_denoiser(tiny_config(**changes), progress=False)
    ckpt = tmp_path / "run.ckpt"
    first = train_denoiser(tiny_config(**changes), checkpoint=ckpt, progress=False, stop_after=3)
    assert first.steps_done == 3 and ckpt.exists()
    resumed = train_denoiser(tiny_config(**changes), checkpoint=ckpt, progress=False)
    assert resumed.steps_done == 6
    assert torch.equal(weights(straight.model), weights(resumed.model))
    assert [h["step"] for h in resumed.history] == [3, 6]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_resume_refuses_other_settings(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    train_denoiser(tiny_config(), checkpoint=ckpt, progress=False, stop_after=3)
    with pytest.raises(ValueError, match="different settings.*lr"):
        train_denoiser(tiny_config(lr=5e-4), checkpoint=ckpt, progress=False)


def test_two_processes_give_the_weights_of_one(tmp_path):
    single = train_denoiser(tiny_config(), device="cpu", progress=False)
    out = tmp_path / "ddp.pt"
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29517", str(Path(__file__).parent / "ddp_worker.py"),
                          str(out)], env=env, capture_output=True, text=True, timeout=300,
                     check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    ddp = torch.load(out, weights_only=True)
    flat = torch.cat([v.flatten() for k, v in ddp.items() if "factor" not in k])
    assert torch.allclose(flat, weights(single.model), rtol=0, atol=1e-6)


def test_bad_settings_are_explained():
    with pytest.raises(ValueError, match="unknown loss"):
        TrainConfig("chen", loss="l1")
    with pytest.raises(ValueError, match="steps must be"):
        TrainConfig("chen", steps=-1)
