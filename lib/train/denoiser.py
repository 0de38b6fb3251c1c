"""Training the denoisers: pixel MSE, WGAN-GP with a perceptual loss, and the feature autoencoder.

:func:`train_denoiser` runs :class:`DenoiserTask` in the shared resumable loop
(:mod:`lib.train.resumable`: checkpoints, resumption, history, progress). One task serves all
three losses (``TrainConfig.loss``):

- ``"mse"``: minimise ||G(x) - y||^2 (Chen CNN, RED-CNN).
- ``"wgan"``: after ``warmup_steps`` of MSE, alternate ``critic_steps`` critic updates (WGAN-GP,
  gradient penalty weight ``gp_weight``) with generator updates on
  ``mse_weight * MSE + perceptual_weight * ||phi(G(x)) - phi(y)||^2 - adversarial_weight * D(G(x))``
  (WGAN-VGG, CPCE). The defaults are the papers' objective: no warm-up, 4 critic updates, no MSE
  term, perceptual weight 0.1 and adversarial weight 1. ``phi`` is VGG-19 when a weight file is
  given, else the project's feature net. The history logs the critic's Wasserstein estimate
  E[D(y)] - E[D(G(x))].
- ``"autoencoder"``: train :class:`~lib.models.PhantomFeatures` to reconstruct noiseless patches.

Inputs are low-dose patches, targets normal-dose patches (the centre slice for slab networks), as
in the source papers. Losses are computed in network units (mu / MU_WATER).

Everything that decides the result is fixed by the seed: the initial weights, which patches form
step ``s``'s batch (patch ``i`` of the epoch is fixed by ``(seed, i)``), and the gradient-penalty
mixing weights. A run interrupted and resumed from its checkpoint therefore ends with the same
weights as an uninterrupted run, and N processes end where one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lib.checkpoints import DENOISER_LOADER, read_weights
from lib.ct.datasets import DoseProtocol, PairedImages, PatchDataset, phantom_pairs
from lib.ct.protocol import PAPER
from lib.ct.units import MU_WATER
from lib.models import Critic, PhantomFeatures, VGG19Features, build, slab_of, transfer_2d_to_3d
from lib.models.inference import denoise
from lib.train import distributed
from lib.train.metrics import image_quality, perceptual_loss
from lib.train.resumable import Task, TrainResult, read_checkpoint, run

LOSSES = ("mse", "wgan", "autoencoder")
_ENDLESS = 2 ** 62  # patch streams are indexed, never exhausted


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in its checkpoint)."""

    model: str
    loss: str = "mse"
    steps: int = 1000
    batch_size: int = 16
    patch_size: int = 64
    lr: float = 1e-4
    # learning rate lr / (1 + step / lr_decay_steps), the CPCE code's lr / (epoch + 1) with an
    # "epoch" of lr_decay_steps steps (None: constant); it depends on the step alone, so a run
    # with fewer steps is still the start of a longer one
    lr_decay_steps: int | None = None
    seed: int = 0
    n_train: int = 64          # phantom slices (or slabs) in the training split
    n_val: int = 4             # validation slices, evaluated every eval_every steps
    eval_every: int = 100
    checkpoint_every: int = 100
    size: int = PAPER.size     # simulated image size (pixels) over PAPER's field of view
    slab: int | None = None    # slices seen by a cpce3d (3, 5, 7 or 9; None: PAPER.slab)
    # adversarial training (the defaults: the papers' objective)
    warmup_steps: int = 0
    critic_steps: int = 4
    gp_weight: float = 10.0
    mse_weight: float = 0.0
    perceptual_weight: float = 0.1
    adversarial_weight: float = 1.0
    vgg19_weights: str | None = None
    # start from another model's weights: a checkpoint file, "shipped:NAME", or "transfer:NAME"
    # (a shipped CPCE2D lifted to CPCE3D by 2-D -> 3-D transfer)
    init_from: str | None = None

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be >= 0 and batch_size >= 1")

    def protocol(self, slab: int | None) -> DoseProtocol:
        return DoseProtocol(size=self.size, pixel_mm=PAPER.field_of_view_mm / self.size, slab=slab or 1)


def train_denoiser(config: TrainConfig, checkpoint: str | Path | None = None, device: str = "auto",
                   resume: bool = True, progress: bool = True,
                   stop_after: int | None = None) -> TrainResult:
    """Train per ``config``; checkpoint atomically to ``checkpoint`` every ``checkpoint_every`` steps.

    With ``resume`` and an existing checkpoint, training continues from it (its config must match).
    ``stop_after`` ends the run early after that many steps in total (to test resumption).
    """
    return run(DenoiserTask, config, checkpoint, device, resume, progress, stop_after)


class DenoiserTask(Task):
    """One generator step (after ``critic_steps`` critic steps once adversarial) on batch ``s``."""

    def __init__(self, config: TrainConfig, device: torch.device):
        self.rank, self.world = distributed.setup(device)
        if config.batch_size % self.world:
            raise ValueError(f"batch_size {config.batch_size} must be divisible by {self.world} "
                             "processes")
        self.config, self.device, self.primary = config, device, self.rank == 0
        self.description = f"training {config.model}"
        self.model = _initial_model(config).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.critic = self.critic_optimizer = self.features = None
        if config.loss == "wgan":
            self.critic = Critic(config.patch_size).to(device)
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.lr,
                                                     betas=(0.5, 0.9))
            self.features = feature_network(config.vgg19_weights).to(device)

    def states(self) -> dict:
        critic = {"critic": self.critic, "critic_optimizer": self.critic_optimizer}
        return super().states() | (critic if self.critic is not None else {})

    def prepare(self, fresh: bool) -> None:
        config, protocol = self.config, self.config.protocol(slab_of(self.model))
        pairs = phantom_pairs("train", config.n_train, protocol, progress=self.primary)
        self.validation = phantom_pairs("validation", config.n_val, protocol, progress=False)
        # patch i is fixed by (seed, i): the generator's batch s takes patches [s B, (s + 1) B),
        # the critic's k-th update at step s takes its own stream, so nothing depends on the
        # step count
        self.patches = PatchDataset(pairs, config.patch_size, _ENDLESS, config.seed)
        self.critic_patches = PatchDataset(pairs, config.patch_size, _ENDLESS, config.seed + 1)

    def step(self, step: int) -> tuple[float, dict[str, float]]:
        config, model = self.config, self.model
        if config.lr_decay_steps:
            for optimizer in filter(None, (self.optimizer, self.critic_optimizer)):
                for group in optimizer.param_groups:
                    group["lr"] = config.lr / (1 + step / config.lr_decay_steps)
        low, normal, truth = self._batch(self.patches, step)
        autoencoder = config.loss == "autoencoder"
        target = truth if autoencoder else _center_slice(normal)
        adversarial = config.loss == "wgan" and step >= config.warmup_steps
        if adversarial:
            distances = []
            for k in range(config.critic_steps):
                c_low, c_normal, _ = self._batch(self.critic_patches, step * config.critic_steps + k)
                distances.append(self._critic_step(c_low, _center_slice(c_normal), step, k))
        self.optimizer.zero_grad()
        output = model.reconstruct(truth) if autoencoder else model(low)
        loss, logged = self.generator_loss(output, target, adversarial)
        if adversarial:
            logged["wasserstein"] = float(np.mean(distances))
        loss.backward()
        distributed.average_gradients(model)
        self.optimizer.step()
        return loss.item(), logged

    def generator_loss(self, output: torch.Tensor, target: torch.Tensor,
                       adversarial: bool) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator's loss on a batch, and its terms: the MSE (network units) alone, or once
        adversarial ``mse_weight * MSE + perceptual_weight * perceptual - adversarial_weight * D``."""
        config = self.config
        mse = F.mse_loss(output / MU_WATER, target / MU_WATER)
        logged = {"mse": mse.item()}
        if not adversarial:
            return mse, logged
        perceptual = F.mse_loss(self.features(output), self.features(target))
        fooling = -self.critic(output).mean()
        logged |= {"perceptual": perceptual.item(), "adversarial": fooling.item()}
        return (config.mse_weight * mse + config.perceptual_weight * perceptual
                + config.adversarial_weight * fooling), logged

    def evaluate(self) -> dict[str, float]:
        return evaluate(self.model, self.validation, self.config.loss)

    def close(self) -> None:
        distributed.teardown()

    def _batch(self, patches: PatchDataset, step: int) -> tuple[torch.Tensor, ...]:
        """This process's share (every world-th sample) of global batch ``step``."""
        size = self.config.batch_size
        items = [patches[i] for i in range(step * size + self.rank, (step + 1) * size, self.world)]
        return tuple(torch.stack(t).to(self.device) for t in zip(*items))

    def _critic_step(self, low, normal, step, k) -> float:
        """One WGAN-GP update of the critic; returns its estimate of the Wasserstein distance
        between normal-dose and generated patches, E[D(normal)] - E[D(G(low))], before the update."""
        critic, config = self.critic, self.config
        with torch.no_grad():
            fake = self.model(low)
        rng = np.random.default_rng([config.seed, step, k])
        mix = torch.as_tensor(rng.uniform(size=config.batch_size)[self.rank::self.world],
                              dtype=fake.dtype, device=fake.device).view(-1, 1, 1, 1)
        between = (mix * normal + (1 - mix) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
        penalty = ((grad.flatten(1) * MU_WATER).norm(dim=1) - 1).pow(2).mean()  # per network unit
        self.critic_optimizer.zero_grad()
        distance = critic(normal).mean() - critic(fake).mean()
        loss = config.gp_weight * penalty - distance
        loss.backward()
        distributed.average_gradients(critic)
        self.critic_optimizer.step()
        return distance.item()


@torch.no_grad()
def evaluate(model: torch.nn.Module, pairs: PairedImages, loss: str = "mse",
             features: torch.nn.Module | None = None) -> dict[str, float]:
    """Image quality of the model's output against normal dose and truth, on whole images; with
    ``features``, also the perceptual loss against normal dose (``perceptual``)."""
    was_training = model.training
    model.eval()
    if loss == "autoencoder":
        truth = pairs.truth[:, None]
        device = next(model.parameters()).device
        output = torch.cat([model.reconstruct(truth[k:k + 2].to(device)).cpu()
                            for k in range(0, len(truth), 2)])
        model.train(was_training)
        return image_quality(output, truth)
    output = denoise(model, pairs.low)[:, None]
    model.train(was_training)
    return _quality_vs_normal_and_truth(output, pairs, features)


def baseline(pairs: PairedImages, features: torch.nn.Module | None = None) -> dict[str, float]:
    """The low-dose input's own quality, measured the same way as :func:`evaluate`."""
    return _quality_vs_normal_and_truth(_center_slice(pairs.low[:, None]), pairs, features)


def _quality_vs_normal_and_truth(output: torch.Tensor, pairs: PairedImages,
                                 features: torch.nn.Module | None) -> dict[str, float]:
    normal = _center_slice(pairs.normal[:, None])
    quality = image_quality(output, normal)
    if features is not None:
        quality["perceptual"] = float(perceptual_loss(output, normal, features).mean())
    against_truth = image_quality(output, _center_slice(pairs.truth[:, None]))
    return quality | {f"{k}_vs_truth": v for k, v in against_truth.items()}


def feature_network(vgg19_weights: str | None = None) -> torch.nn.Module:
    """The fixed feature network phi of the perceptual loss: VGG-19 from a weight file the user has,
    else the shipped ``features`` autoencoder's encoder (ImageNet weights cannot be downloaded)."""
    if vgg19_weights:
        return VGG19Features(vgg19_weights)
    net = PhantomFeatures()
    net.load_state_dict(read_weights("features", DENOISER_LOADER)[0])
    return net.requires_grad_(False).eval()


# --- internals -------------------------------------------------------------------------------


def _center_slice(x: torch.Tensor) -> torch.Tensor:
    """The centre slice of (B, 1, D, H, W) slabs; 2-D batches pass through."""
    return x[:, :, x.shape[2] // 2] if x.dim() == 5 else x


def _initial_model(config: TrainConfig) -> torch.nn.Module:
    source = config.init_from
    if source and source.startswith("transfer:"):
        cpce2d = build("cpce2d")
        cpce2d.load_state_dict(read_weights(source.split(":", 1)[1], DENOISER_LOADER)[0])
        return transfer_2d_to_3d(cpce2d, config.slab or PAPER.slab)
    model = build(config.model, config.slab)
    if source and source.startswith("shipped:"):
        model.load_state_dict(read_weights(source.split(":", 1)[1], DENOISER_LOADER)[0])
    elif source:
        model.load_state_dict(read_checkpoint(source)["model"])
    return model
