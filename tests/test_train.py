"""Training: metrics, determinism, resumption, multi-process equivalence."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.ct.units import MU_WATER
from lib.train import TrainConfig, late_change, late_mean_change, train_denoiser
from lib.train.metrics import image_quality, perceptual_loss, psnr, rmse_hu, ssim


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
    if changes:  # the adversarial steps log the critic's Wasserstein estimate
        assert "wasserstein" in resumed.history[-1]["train"]


def test_the_papers_objective_has_no_mse_term():
    """With the default (the papers') weights the generator's loss is -D(G(x)) + 0.1 perceptual:
    moving the target changes it only through the perceptual term; an MSE weight brings it back."""
    from lib.train.denoiser import DenoiserTask

    def loss(config, output, target):
        torch.manual_seed(1)  # the same critic every time
        task = DenoiserTask(config, torch.device("cpu"))
        with torch.no_grad():
            value, logged = task.generator_loss(output, target, adversarial=True)
            fooling = -task.critic(output).mean()
        return float(value), logged, float(fooling)

    torch.manual_seed(0)
    output = MU_WATER * (1 + 0.1 * torch.rand(2, 1, 32, 32))
    target = MU_WATER * (1 + 0.1 * torch.rand(2, 1, 32, 32))
    papers = tiny_config(model="wganvgg", loss="wgan", batch_size=2)
    value, logged, fooling = loss(papers, output, target)
    assert logged["mse"] > 0 and logged["perceptual"] > 0
    assert value == pytest.approx(fooling + 0.1 * logged["perceptual"], rel=1e-5)
    blind = dataclasses.replace(papers, perceptual_weight=0.0)
    assert loss(blind, output, target)[0] == pytest.approx(loss(blind, output, 2 * target)[0])
    mixed = dataclasses.replace(blind, mse_weight=1.0)
    assert loss(mixed, output, target)[0] != pytest.approx(loss(mixed, output, 2 * target)[0])


@pytest.mark.parametrize("decay", [None, 2])
def test_a_shorter_run_is_the_first_steps_of_a_longer_one(decay):
    """What makes ``cpce-s1-early`` the early checkpoint of ``cpce-s1``: the same recipe with
    fewer steps (the learning-rate decay depends on the step alone)."""
    short = train_denoiser(tiny_config(steps=3, lr_decay_steps=decay), progress=False)
    long = train_denoiser(tiny_config(steps=6, lr_decay_steps=decay), progress=False, stop_after=3)
    assert torch.equal(weights(short.model), weights(long.model))
    other = train_denoiser(tiny_config(steps=3, lr_decay_steps=1 if decay else 2), progress=False)
    assert not torch.equal(weights(short.model), weights(other.model))


def test_perceptual_loss_compares_feature_maps():
    torch.manual_seed(0)
    phi = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    x = 0.01 + 0.005 * torch.rand(2, 1, 32, 32)
    noise = 0.002 * torch.randn(x.shape)
    assert float(perceptual_loss(x, x, phi).max()) == 0.0
    small, large = perceptual_loss(x + noise, x, phi), perceptual_loss(x + 3 * noise, x, phi)
    assert small.shape == (2,) and bool((small > 0).all()) and bool((large > small).all())
    blind = torch.nn.Conv2d(1, 4, 3)  # a feature map that ignores its input sees no difference
    torch.nn.init.zeros_(blind.weight)
    assert float(perceptual_loss(x + noise, x, blind).max()) == 0.0


def test_late_change_reads_the_end_of_a_run():
    history = [{"step": s, "validation": {"rmse_hu": v}} for s, v in [(100, 50.0), (200, 40.0)]]
    assert late_change(history, fraction=0.5) == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="evaluate more often"):
        late_change(history, fraction=0.6)  # no evaluation at or before step 80
    with pytest.raises(ValueError, match="strictly between"):
        late_change(history, fraction=1.0)


def test_late_mean_change_tells_a_trend_from_noise():
    noise = np.random.default_rng(0).normal(0.0, 0.05, 40)
    flat = late_mean_change(list(1.0 + noise))
    assert abs(flat.change) < 2 * flat.error and flat.trend == "level"  # within its noise
    rising = late_mean_change(list(1.0 + noise + np.linspace(0.0, 0.4, 40)))  # the noise on a ramp
    assert rising.change > 3 * rising.error and rising.errors > 3 and rising.trend == "rising"
    falling = late_mean_change(list(1.0 + noise - np.linspace(0.0, 0.4, 40)))
    assert falling.trend == "falling"
    assert late_mean_change([1.0] * 8).trend == "level"  # no scatter and no change
    assert late_mean_change([1.0] * 6 + [2.0] * 2).errors == float("inf")  # a step, no scatter
    with pytest.raises(ValueError, match="evaluate more often"):
        late_mean_change([1.0, 2.0, 3.0])


def test_every_shipped_denoiser_is_its_recipe():
    from lib.checkpoints import read_manifest
    from lib.models import build, load, slab_of
    from lib.train.ship import RECIPES

    manifest = read_manifest()
    missing = set(RECIPES) - set(manifest)
    assert not missing, f"ship every recipe: python -m lib.train NAME --ship for {sorted(missing)}"
    for name, recipe in RECIPES.items():
        entry = manifest[name]
        assert entry["command"].split()[:4] in (["python", "-m", "lib.train", name],
                                                ["python", "-m", "lib.train", "all"]), name
        assert TrainConfig(**entry["config"]) == recipe, f"{name}: the recipe changed since shipping"
        # load refuses a checkpoint from other scans than PAPER's or from reshipped sources
        assert slab_of(load(name)) == slab_of(build(recipe.model, recipe.slab)), name


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


def test_retrace_confirms_a_shipped_history_and_names_a_changed_value(tmp_path, monkeypatch):
    import json

    from lib.checkpoints import CheckpointError, cpu_record
    from lib.train import ship
    from lib.train.ship import retrace

    config = tiny_config()
    run = train_denoiser(config, progress=False)
    entry = {"file": "tiny.pt", "sha256": "0" * 64, "config": dataclasses.asdict(config),
             "steps": config.steps, "history": run.history, "depends_on": {"features": "f" * 64}}
    manifest = tmp_path / "manifest.json"

    def write(entry):
        manifest.write_text(
            json.dumps({"tiny": entry, "features": {"file": "features.pt", "sha256": "f" * 64}}))

    write(entry)
    assert retrace("tiny", 6, manifest_path=manifest, progress=False) == 2
    assert retrace("tiny", 4, manifest_path=manifest, progress=False) == 1
    altered = json.loads(json.dumps(run.history))
    altered[1]["validation"]["rmse_hu"] *= 1 + 1e-7  # a history the recipe does not make
    write(entry | {"history": altered, "hardware": {"cpu": "Other CPU", "simd": ["avx512f"]}})
    with pytest.raises(CheckpointError, match="at step 6: validation rmse_hu") as failed:
        retrace("tiny", 6, manifest_path=manifest, progress=False)
    assert "Other CPU" in str(failed.value) and str(cpu_record()) in str(failed.value)
    assert retrace("tiny", 3, manifest_path=manifest, progress=False) == 1  # before the change
    write(entry | {"depends_on": {"features": "e" * 64}})  # its source was reshipped since
    with pytest.raises(CheckpointError, match="other weights of features"):
        retrace("tiny", 6, manifest_path=manifest, progress=False)
    with pytest.raises(ValueError, match="retrace between those"):
        retrace("tiny", 7, manifest_path=manifest, progress=False)
    # the sums' order, and so the last bits, depend on the thread count: a retrace takes the recorded one
    used = []
    monkeypatch.setattr(ship, "train_denoiser",
                        lambda *a, **k: used.append(torch.get_num_threads()) or run)
    before = torch.get_num_threads()
    write(entry | {"hardware": {"threads": before + 1}})
    retrace("tiny", 6, manifest_path=manifest, progress=False)
    assert used == [before + 1] and torch.get_num_threads() == before
