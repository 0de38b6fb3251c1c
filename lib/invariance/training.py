"""Training the invariance models: the VAE, the conditional INNs and the conditional VAE.

One resumable loop for all three (``InvarianceConfig.kind``):

- ``"vae"``: ELBO on low-dose patches, a Gaussian likelihood of standard deviation
  ``recon_std_hu`` plus ``beta`` times the KL term;
- ``"cvae"``: the same with encoder and decoder conditioned on the denoised patch ``f(x)``;
- ``"cinn"``: negative log-likelihood of the shipped VAE's latent means ``E(x)`` given the
  denoiser's features at ``layer``.

Patches come from a fixed pool drawn once from the training phantoms; the batch of step ``s`` is
fixed by ``(seed, s)`` and the random state is checkpointed, so an interrupted run resumed from
its checkpoint gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lib.ct.datasets import PatchDataset, phantom_pairs
from lib.ct.units import MU_WATER
from lib.device import pick_device
from lib.invariance.cinn import ConditionalINN, negative_log_likelihood
from lib.invariance.layers import layer_output
from lib.invariance.vae import PatchVAE, kl_divergence
from lib.models import load as load_denoiser
from lib.models.registry import CheckpointError, load_checkpoint_weights
from lib.storage import atomic_save
from lib.train.loops import TrainResult, read_checkpoint

KINDS = ("vae", "cvae", "cinn")


@dataclass(frozen=True)
class InvarianceConfig:
    """Everything an invariance-model run depends on (stored in its checkpoint)."""

    kind: str
    network: str | None = None   # the denoiser analysed (cinn, cvae)
    layer: int | None = None     # its layer (cinn)
    vae: str = "inv-vae"         # the shipped VAE whose latent the cINN models
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    patch_size: int = 32
    latent_dim: int = 64
    recon_std_hu: float = 30.0   # likelihood width of the (c)VAE, HU
    beta: float = 1.0
    n_blocks: int = 8
    hidden: int = 128
    embed_dim: int = 64
    n_train: int = 32            # training phantom slices
    n_patches: int = 8192        # patches in the training pool
    n_val_patches: int = 512
    seed: int = 0
    eval_every: int = 250
    checkpoint_every: int = 250

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind in ("cvae", "cinn") and not self.network:
            raise ValueError(f"a {self.kind} needs the denoiser it explains: set network")
        if self.kind == "cinn" and not self.layer:
            raise ValueError("a cinn needs the layer whose invariances it samples: set layer")


def patch_pool(split: str, n_slices: int, n_patches: int, patch_size: int, seed: int) -> torch.Tensor:
    """(n_patches, 1, P, P) low-dose patches of the split's phantoms (fixed by ``seed``)."""
    pairs = phantom_pairs(split, n_slices, progress=False)
    patches = PatchDataset(pairs, patch_size, n_patches, seed=seed)
    return torch.stack([patches[i][0] for i in range(n_patches)])


class Objective:
    """The model of a config and its loss on a batch of low-dose patches."""

    def __init__(self, config: InvarianceConfig, device: torch.device,
                 model: torch.nn.Module | None = None):
        self.config = config
        self.denoiser = None
        if config.network:
            self.denoiser = load_denoiser(config.network, device).requires_grad_(False)
        if config.kind == "cinn":
            self.vae = load(config.vae, device).requires_grad_(False)
            probe = torch.zeros(1, 1, config.patch_size, config.patch_size, device=device)
            channels = layer_output(self.denoiser, probe, config.layer).shape[1]
            model = model or ConditionalINN(self.vae.latent_dim, channels, config.embed_dim,
                                            config.n_blocks, config.hidden)
        self.model = (model or PatchVAE(config.patch_size, config.latent_dim,
                                        condition=config.kind == "cvae")).to(device)

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        with torch.no_grad():
            fx = self.denoiser(x) if c.kind == "cvae" else None
        if c.kind == "cinn":
            with torch.no_grad():
                z_bar = self.vae.encode(x)[0]
                features = layer_output(self.denoiser, x, c.layer)
            nll = negative_log_likelihood(*self.model(z_bar, features))
            return nll, {"nll": nll.item()}
        recon, mean, logvar = self.model(x, fx)
        sigma = c.recon_std_hu / 1000
        fit = ((recon - x) / MU_WATER).pow(2).flatten(1).sum(1) / (2 * sigma ** 2)
        kl = kl_divergence(mean, logvar)
        loss = (fit + c.beta * kl).mean() / x[0].numel()
        rmse = ((recon - x).pow(2).mean().sqrt() * 1000 / MU_WATER).item()
        return loss, {"elbo_per_pixel": loss.item(), "rmse_hu": rmse, "kl": kl.mean().item()}

    @torch.no_grad()
    def evaluate(self, patches: torch.Tensor, batch: int = 256) -> dict[str, float]:
        was = self.model.training
        self.model.eval()
        rows = [self.loss(patches[k:k + batch])[1] for k in range(0, len(patches), batch)]
        self.model.train(was)
        return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}


def train(config: InvarianceConfig, checkpoint: str | Path | None = None, device: str = "auto",
          resume: bool = True, progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train per ``config``, checkpointing atomically; resumes from ``checkpoint`` if it exists."""
    dev = pick_device(device)
    torch.manual_seed(config.seed)
    objective = Objective(config, dev)
    model = objective.model
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    state = {"step": 0, "history": [], "seconds": 0.0}
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint and resume and checkpoint.exists():
        saved = read_checkpoint(checkpoint)
        if saved["config"] != dataclasses.asdict(config):
            raise ValueError(f"{checkpoint} was written by another configuration; delete it or "
                             "pass resume=False to start over")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        state = {k: saved[k] for k in ("step", "history", "seconds")}
    pool = patch_pool("train", config.n_train, config.n_patches, config.patch_size, config.seed)
    val = patch_pool("validation", 4, config.n_val_patches, config.patch_size, config.seed)
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    bar = tqdm(range(state["step"], end), initial=state["step"], total=config.steps,
               desc=f"training {config.kind} {config.network or ''} {config.layer or ''}".strip(),
               disable=not progress)
    start = time.perf_counter()
    model.train()
    for step in bar:
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        x = pool[torch.randint(len(pool), (config.batch_size,), generator=g)].to(dev)
        loss, logged = objective.loss(x)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps:
            state["history"].append({"step": done, "train": logged,
                                     "validation": objective.evaluate(val.to(dev))})
        if checkpoint and (done % config.checkpoint_every == 0 or done == end):
            elapsed = state["seconds"] + time.perf_counter() - start
            atomic_save({"config": dataclasses.asdict(config), "step": done,
                         "history": state["history"], "seconds": elapsed,
                         "model": model.state_dict(), "optimizer": opt.state_dict(),
                         "rng": torch.get_rng_state()}, checkpoint)
    state["seconds"] += time.perf_counter() - start
    model.eval()
    return TrainResult(model, state["history"], state["seconds"], end)


def build(config: InvarianceConfig, device: str | torch.device = "cpu") -> torch.nn.Module:
    """An untrained model of ``config`` (its shipped VAE and denoiser are needed for a cINN)."""
    return Objective(config, pick_device(device)).model


def load(name: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A shipped invariance model (VAE, cINN or cVAE) by manifest name, checksum verified."""
    weights, entry = load_checkpoint_weights(name)
    if not str(entry.get("architecture", "")).startswith("invariance"):
        raise CheckpointError(f"{name!r} is a denoiser, not an invariance model: load it with "
                              f"lib.models.load({name!r}); invariance models are named inv-...")
    model = build(InvarianceConfig(**entry["config"]), device)
    model.load_state_dict(weights)
    return model.eval()
