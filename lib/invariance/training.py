"""Training the conditional INNs that sample a layer's invariances.

:func:`train_sampler` runs :class:`SamplerTask` in the shared resumable loop
(:mod:`lib.train.resumable`: checkpoints, resumption, history, progress). A fresh run first fits
the cINN's conditional mean ``m(Phi_l(x))``, a linear map of the (squeezed) features, by least
squares on the whole training pool; then it minimises the negative log-likelihood of low-dose
patches ``x`` given the features ``Phi_l(x)`` of a denoiser (a shipped one, or the synthetic
:class:`~lib.invariance.synthetic.PairAverage` with its known invariance, network
``"pair-average"``) at one layer.

Patches come from a fixed pool drawn once from the training phantoms; the batch of step ``s`` is
fixed by ``(seed, s)`` and the loop checkpoints the random state, so an interrupted run resumed
from its checkpoint gives the same weights as an uninterrupted one. :func:`load_sampler` loads a
shipped sampler by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lib.checkpoints import LOADERS, read_weights
from lib.ct.datasets import PatchDataset, phantom_pairs
from lib.ct.units import MU_WATER
from lib.device import pick_device
from lib.invariance.cinn import ConditionalINN, negative_log_likelihood
from lib.invariance.layers import layer_output
from lib.invariance.synthetic import PairAverage
from lib.models import load as load_shipped_denoiser
from lib.train.resumable import Task, TrainResult, run


@dataclass(frozen=True)
class InvarianceConfig:
    """Everything a cINN run depends on (stored in its checkpoint)."""

    network: str                 # the denoiser analysed, or "pair-average"
    layer: int                   # its layer (1-based, see lib.invariance.layers)
    steps: int = 600
    batch_size: int = 64
    lr: float = 5e-4
    patch_size: int = 16
    n_blocks: int = 6
    hidden: int = 128
    embed_dim: int = 128
    n_train: int = 32            # training phantom slices
    n_patches: int = 16384       # patches in the training pool
    n_val_patches: int = 512
    seed: int = 0
    eval_every: int = 200
    checkpoint_every: int = 200

    def __post_init__(self):
        if not self.network:
            raise ValueError("a cINN needs the denoiser it explains: set network")
        if not self.layer or self.layer < 1:
            raise ValueError(f"a cINN needs the layer (from 1) whose invariances it samples: "
                             f"set layer, got {self.layer}")


def denoiser(network: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The network a config explains: a shipped denoiser, or ``"pair-average"``."""
    model = PairAverage() if network == "pair-average" else load_shipped_denoiser(network)
    return model.to(device).eval().requires_grad_(False)


def patch_pool(split: str, n_slices: int, n_patches: int, patch_size: int,
               seed: int) -> torch.Tensor:
    """(n_patches, 1, P, P) low-dose patches of the split's phantoms (fixed by ``seed``)."""
    pairs = phantom_pairs(split, n_slices, progress=False)
    patches = PatchDataset(pairs, patch_size, n_patches, seed=seed)
    return torch.stack([patches[i][0] for i in range(n_patches)])


class Objective:
    """The cINN of a config and its loss on a batch of low-dose patches."""

    def __init__(self, config: InvarianceConfig, device: torch.device,
                 model: torch.nn.Module | None = None):
        self.config = config
        self.denoiser = denoiser(config.network, device)
        probe = torch.zeros(1, 1, config.patch_size, config.patch_size, device=device)
        shape = layer_output(self.denoiser, probe, config.layer).shape[1:]
        self.model = (model or ConditionalINN(config.patch_size, shape, config.embed_dim,
                                              config.n_blocks, config.hidden)).to(device)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return layer_output(self.denoiser, x, self.config.layer)

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        features = self.features(x)
        nll = negative_log_likelihood(*self.model(x, features))
        rmse = self.model.mean_error(x, features).sqrt().item() * 1000
        return nll, {"nll": nll.item(), "mean_rmse_hu": rmse}

    @torch.no_grad()
    def fit_mean(self, pool: torch.Tensor, ridge: float = 1e-8, batch: int = 256) -> None:
        """Set the mean head ``m`` to the least-squares fit of ``x / mu_water`` on the squeezed
        features over ``pool`` (normal equations in float64, a tiny relative ridge)."""
        embedding = self.model.embedding
        gram, cross = 0.0, 0.0
        for k in range(0, len(pool), batch):
            x = pool[k:k + batch]
            a = embedding.mean_squeeze(self.features(x)).double()
            a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
            gram = gram + a.T @ a
            cross = cross + a.T @ (x.flatten(1).double() / MU_WATER)
        gram = gram + ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype,
                                                                  device=gram.device)
        solution = torch.linalg.solve(gram, cross)
        embedding.mean.weight.copy_(solution[:-1].T)
        embedding.mean.bias.copy_(solution[-1])

    @torch.no_grad()
    def evaluate(self, patches: torch.Tensor, batch: int = 256) -> dict[str, float]:
        was = self.model.training
        self.model.eval()
        rows = [self.loss(patches[k:k + batch])[1] for k in range(0, len(patches), batch)]
        self.model.train(was)
        return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}


def train_sampler(config: InvarianceConfig, checkpoint: str | Path | None = None,
                  device: str = "auto", resume: bool = True, progress: bool = True,
                  stop_after: int | None = None) -> TrainResult:
    """Train per ``config``, checkpointing atomically; resumes from ``checkpoint`` if it exists."""
    return run(SamplerTask, config, checkpoint, device, resume, progress, stop_after)


class SamplerTask(Task):
    """One negative log-likelihood step of the cINN on the pool batch fixed by ``(seed, s)``."""

    def __init__(self, config: InvarianceConfig, device: torch.device):
        self.config, self.device = config, device
        self.description = f"training cINN {config.network} layer {config.layer}"
        self.objective = Objective(config, device)
        self.model = self.objective.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)

    def prepare(self, fresh: bool) -> None:
        config = self.config
        self.pool = patch_pool("train", config.n_train, config.n_patches, config.patch_size,
                               config.seed)
        self.validation = patch_pool("validation", 4, config.n_val_patches, config.patch_size,
                                     config.seed).to(self.device)
        if fresh:  # m by least squares, then the flow's ActNorms see residuals
            self.objective.fit_mean(self.pool.to(self.device))

    def step(self, step: int) -> tuple[float, dict[str, float]]:
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        x = self.pool[torch.randint(len(self.pool), (self.config.batch_size,), generator=g)]
        loss, logged = self.objective.loss(x.to(self.device))
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        self.optimizer.step()
        return loss.item(), logged

    def evaluate(self) -> dict[str, float]:
        return self.objective.evaluate(self.validation)


def build_sampler(config: InvarianceConfig, device: str | torch.device = "cpu") -> torch.nn.Module:
    """An untrained cINN of ``config`` (the shipped denoiser it explains is needed)."""
    return Objective(config, pick_device(device)).model


def load_sampler(name: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A shipped invariance sampler (cINN) by manifest name, checksum verified."""
    weights, entry = read_weights(name, LOADERS["invariance"])
    model = build_sampler(InvarianceConfig(**entry["config"]), device)
    model.load_state_dict(weights)
    return model.eval()
