"""Training the denoisers: pixel MSE, WGAN-GP with a perceptual loss, and the feature autoencoder.

One loop serves all three losses (``TrainConfig.loss``):

- ``"mse"``: minimise ||G(x) - y||^2 (Chen CNN, RED-CNN).
- ``"wgan"``: after ``warmup_steps`` of MSE, alternate ``critic_steps`` critic updates (WGAN-GP,
  gradient penalty weight ``gp_weight``) with generator updates on
  ``mse_weight * MSE + perceptual_weight * ||phi(G(x)) - phi(y)||^2 - adversarial_weight * D(G(x))``
  (WGAN-VGG, CPCE). ``phi`` is VGG-19 when a weight file is given, else the project's feature net.
- ``"autoencoder"``: train :class:`~lib.models.PhantomFeatures` to reconstruct noiseless patches.

Inputs are low-dose patches, targets normal-dose patches (the centre slice for slab networks), as
in the source papers. Losses are computed in network units (mu / MU_WATER).

Everything that decides the result is fixed by the seed: the initial weights, which patches form
step ``s``'s batch (patch ``i`` of the epoch is fixed by ``(seed, i)``), and the gradient-penalty
mixing weights. A run interrupted and resumed from its checkpoint therefore ends with the same
weights as an uninterrupted run, and N processes end where one does.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lib.ct.datasets import DoseProtocol, PairedImages, PatchDataset, phantom_pairs
from lib.ct.units import MU_WATER
from lib.device import pick_device
from lib.models import Critic, PhantomFeatures, VGG19Features, build, slab_depth
from lib.models.inference import denoise
from lib.models.registry import load_checkpoint_weights
from lib.storage import atomic_save
from lib.train import distributed
from lib.train.metrics import image_quality

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
    seed: int = 0
    n_train: int = 64          # phantom slices (or slabs) in the training split
    n_val: int = 4             # validation slices, evaluated every eval_every steps
    eval_every: int = 100
    checkpoint_every: int = 100
    size: int = 256            # simulated image size (pixels); pixel size keeps 384 mm
    # adversarial training
    warmup_steps: int = 0
    critic_steps: int = 2
    gp_weight: float = 10.0
    mse_weight: float = 1.0
    perceptual_weight: float = 0.1
    adversarial_weight: float = 1e-3
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
        return DoseProtocol(size=self.size, pixel_mm=384.0 / self.size, slab=slab or 1)


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps_done: int = 0


def train(config: TrainConfig, checkpoint: str | Path | None = None, device: str = "auto",
          resume: bool = True, progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train per ``config``; checkpoint atomically to ``checkpoint`` every ``checkpoint_every`` steps.

    With ``resume`` and an existing checkpoint, training continues from it (its config must match).
    ``stop_after`` ends the run early after that many steps in total (to test resumption).
    """
    dev = pick_device(device)
    rank, world = distributed.setup(dev)
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by {world} processes")
    torch.manual_seed(config.seed)
    model = _initial_model(config).to(dev)
    slab = slab_depth(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    critic = critic_opt = features = None
    if config.loss == "wgan":
        critic = Critic(config.patch_size).to(dev)
        critic_opt = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.5, 0.9))
        features = _features(config).to(dev)

    state = {"step": 0, "history": [], "seconds": 0.0}
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint and resume and checkpoint.exists():
        state = _restore(checkpoint, config, model, opt, critic, critic_opt)

    pairs = phantom_pairs("train", config.n_train, config.protocol(slab), progress=progress and rank == 0)
    val = phantom_pairs("validation", config.n_val, config.protocol(slab), progress=False)
    # patch i is fixed by (seed, i): the generator's batch s takes patches [s B, (s + 1) B), the
    # critic's k-th update at step s takes its own stream, so nothing depends on the step count
    patches = PatchDataset(pairs, config.patch_size, _ENDLESS, config.seed)
    critic_patches = PatchDataset(pairs, config.patch_size, _ENDLESS, config.seed + 1)

    end = config.steps if stop_after is None else min(config.steps, stop_after)
    bar = tqdm(range(state["step"], end), initial=state["step"], total=config.steps,
               desc=f"training {config.model}", disable=not progress or rank != 0)
    start = time.perf_counter()
    for step in bar:
        low, normal, truth = _batch(patches, step, config.batch_size, rank, world, dev)
        target = truth if config.loss == "autoencoder" else _centre(normal)
        source = truth if config.loss == "autoencoder" else low
        adversarial = config.loss == "wgan" and step >= config.warmup_steps
        if adversarial:
            for k in range(config.critic_steps):
                c_low, c_normal, _ = _batch(critic_patches, step * config.critic_steps + k,
                                            config.batch_size, rank, world, dev)
                _critic_step(model, critic, critic_opt, c_low, _centre(c_normal), config, step, k,
                             rank, world)
        opt.zero_grad()
        output = model.reconstruct(source) if config.loss == "autoencoder" else model(source)
        loss = F.mse_loss(output / MU_WATER, target / MU_WATER)
        logged = {"mse": loss.item()}
        if adversarial:
            loss = config.mse_weight * loss
            perceptual = F.mse_loss(features(output), features(target))
            fooling = -critic(output).mean()
            loss = loss + config.perceptual_weight * perceptual + config.adversarial_weight * fooling
            logged |= {"perceptual": perceptual.item(), "adversarial": fooling.item()}
        loss.backward()
        distributed.average_gradients(model)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3e}")
        done = step + 1
        if rank == 0 and (done % config.eval_every == 0 or done == config.steps):
            state["history"].append({"step": done, "train": logged,
                                     "validation": evaluate(model, val, config.loss)})
        if rank == 0 and checkpoint and (done % config.checkpoint_every == 0 or done == end):
            state["step"], elapsed = done, state["seconds"] + time.perf_counter() - start
            _save(checkpoint, config, model, opt, critic, critic_opt, done, state["history"], elapsed)
    state["seconds"] += time.perf_counter() - start
    distributed.teardown()
    model.eval()
    return TrainResult(model, state["history"], state["seconds"], end)


@torch.no_grad()
def evaluate(model: torch.nn.Module, pairs: PairedImages, loss: str = "mse") -> dict[str, float]:
    """Image quality of the model's output against normal dose and truth, on whole images."""
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
    return _quality_vs_normal_and_truth(output, pairs)


def baseline(pairs: PairedImages) -> dict[str, float]:
    """The low-dose input's own quality, measured the same way as :func:`evaluate`."""
    return _quality_vs_normal_and_truth(_centre(pairs.low[:, None]), pairs)


def _quality_vs_normal_and_truth(output: torch.Tensor, pairs: PairedImages) -> dict[str, float]:
    quality = image_quality(output, _centre(pairs.normal[:, None]))
    against_truth = image_quality(output, _centre(pairs.truth[:, None]))
    return quality | {f"{k}_vs_truth": v for k, v in against_truth.items()}


def read_checkpoint(path: str | Path) -> dict:
    """A training checkpoint's contents; a damaged file is refused by name."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to read it means the file is damaged
        raise ValueError(f"{path} cannot be read as a checkpoint ({type(err).__name__}); the file "
                         "is damaged: delete it to start over (or pass --restart)") from err


# --- internals -------------------------------------------------------------------------------


def _centre(x: torch.Tensor) -> torch.Tensor:
    """The centre slice of (B, 1, D, H, W) slabs; 2-D batches pass through."""
    return x[:, :, x.shape[2] // 2] if x.dim() == 5 else x


def _batch(patches, step, batch_size, rank, world, device):
    """This process's share (every world-th sample) of global batch ``step``."""
    indices = range(step * batch_size + rank, (step + 1) * batch_size, world)
    items = [patches[i] for i in indices]
    return tuple(torch.stack(t).to(device) for t in zip(*items))


def _critic_step(model, critic, critic_opt, low, normal, config, step, k, rank, world):
    with torch.no_grad():
        fake = model(low)
    rng = np.random.default_rng([config.seed, step, k])
    mix = torch.as_tensor(rng.uniform(size=config.batch_size)[rank::world], dtype=fake.dtype,
                          device=fake.device).view(-1, 1, 1, 1)
    between = (mix * normal + (1 - mix) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
    penalty = ((grad.flatten(1) * MU_WATER).norm(dim=1) - 1).pow(2).mean()  # per network unit
    critic_opt.zero_grad()
    loss = critic(fake).mean() - critic(normal).mean() + config.gp_weight * penalty
    loss.backward()
    distributed.average_gradients(critic)
    critic_opt.step()


def _initial_model(config: TrainConfig) -> torch.nn.Module:
    from lib.models import transfer_2d_to_3d

    source = config.init_from
    if source and source.startswith("transfer:"):
        cpce2d = build("cpce2d")
        cpce2d.load_state_dict(load_checkpoint_weights(source.split(":", 1)[1])[0])
        return transfer_2d_to_3d(cpce2d)
    model = build(config.model)
    if source and source.startswith("shipped:"):
        model.load_state_dict(load_checkpoint_weights(source.split(":", 1)[1])[0])
    elif source:
        model.load_state_dict(read_checkpoint(source)["model"])
    return model


def _features(config: TrainConfig) -> torch.nn.Module:
    if config.vgg19_weights:
        return VGG19Features(config.vgg19_weights)
    net = PhantomFeatures()
    net.load_state_dict(load_checkpoint_weights("features")[0])
    return net.requires_grad_(False).eval()


def _save(path, config, model, opt, critic, critic_opt, step, history, seconds):
    state = {"config": dataclasses.asdict(config), "step": step, "history": history,
             "seconds": seconds, "model": model.state_dict(), "optimizer": opt.state_dict()}
    if critic is not None:
        state |= {"critic": critic.state_dict(), "critic_optimizer": critic_opt.state_dict()}
    atomic_save(state, path)


def _restore(path, config, model, opt, critic, critic_opt) -> dict:
    saved = read_checkpoint(path)
    ours = dataclasses.asdict(config)
    changed = sorted(k for k in ours if k not in ("steps",) and saved["config"].get(k) != ours[k])
    if changed:
        raise ValueError(f"{path} was written with different settings ({', '.join(changed)}); "
                         "delete it or pass resume=False (--restart) to start over")
    if saved["step"] > config.steps:
        raise ValueError(f"{path} already holds {saved['step']} steps, more than the "
                         f"{config.steps} asked for; ask for at least {saved['step']} steps, or "
                         "pass resume=False (--restart) to start over")
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    if critic is not None:
        critic.load_state_dict(saved["critic"])
        critic_opt.load_state_dict(saved["critic_optimizer"])
    return {"step": saved["step"], "history": saved["history"], "seconds": saved["seconds"]}
