"""One resumable training loop, shared by the denoiser and the invariance-sampler trainers.

A trainer is a :class:`Task`: it builds its networks and data, says what one step does and how
to evaluate, and names the modules and optimizers whose state a checkpoint keeps. :func:`run`
does everything else, the same way for every task:

- seeds the global random state with ``config.seed`` before the task builds its networks;
- counts steps; step ``s`` is the task's, and its batch is fixed by ``(seed, s)`` (the task's
  job), so nothing depends on where a run was interrupted;
- every ``config.eval_every`` steps (and at the last) appends ``{"step", "train", "validation"}``
  to the history;
- every ``config.checkpoint_every`` steps (and where it stops) saves the config, step, history,
  wall time, the task's states, the random state and the machine
  (:func:`lib.checkpoints.machine_record`) atomically (:mod:`lib.storage`);
- resumes from an existing checkpoint when its config matches (``steps`` may grow), and refuses
  by name one written with other settings, one holding more steps than asked, a damaged one, and
  one written on another CPU, thread count, torch version or device (resumed there, the run would
  splice two trajectories that no one machine makes); ``resume=False`` starts over;
- shows a tqdm bar and measures the wall time over all sessions.

A run interrupted after step k and resumed on the same machine therefore ends with the same
weights as an uninterrupted one (the tests check it for the skeleton and for both trainers).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from lib.checkpoints import machine_record
from lib.device import pick_device
from lib.storage import atomic_save


@dataclass
class TrainResult:
    """A finished (or stopped) run: the network in eval mode, its history and wall time."""

    model: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps_done: int = 0


class Task:
    """What :func:`run` needs from a trainer. Subclasses set ``model`` and ``optimizer`` (and any
    other state in :meth:`states`) in their constructor and define :meth:`step` and
    :meth:`evaluate`."""

    config = None          # a dataclass with steps, seed, eval_every, checkpoint_every
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    description = "training"
    primary = True         # False on the data-parallel processes that neither log nor save

    def states(self) -> dict:
        """The modules and optimizers a checkpoint keeps, by the key it keeps them under."""
        return {"model": self.model, "optimizer": self.optimizer}

    def prepare(self, fresh: bool) -> None:
        """Load data once the checkpoint (if any) is restored; ``fresh`` when starting at 0."""

    def step(self, step: int) -> tuple[float, dict[str, float]]:
        """One optimisation step; returns the loss shown and the values logged."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Validation metrics of the current network."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the task holds (process groups)."""


def run(make_task: Callable[[object, torch.device], Task], config, checkpoint: str | Path | None,
        device: str = "auto", resume: bool = True, progress: bool = True,
        stop_after: int | None = None) -> TrainResult:
    """Train the task ``make_task(config, device)`` to ``config.steps``, checkpointing to
    ``checkpoint`` and resuming from it (see the module docstring). ``stop_after`` ends the run
    after that many steps in total, as an interruption would."""
    dev = pick_device(device)
    torch.manual_seed(config.seed)
    task = make_task(config, dev)
    state = {"step": 0, "history": [], "seconds": 0.0}
    machine = machine_record(dev)
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint and resume and checkpoint.exists():
        state = restore(checkpoint, config, task.states(), machine)
    task.prepare(fresh=state["step"] == 0)
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    bar = tqdm(range(state["step"], end), initial=state["step"], total=config.steps,
               desc=task.description, disable=not progress or not task.primary)
    start = time.perf_counter()
    task.model.train()
    for step in bar:
        loss, logged = task.step(step)
        bar.set_postfix(loss=f"{loss:.4g}")
        done = step + 1
        if task.primary and (done % config.eval_every == 0 or done == config.steps):
            state["history"].append({"step": done, "train": logged,
                                     "validation": task.evaluate()})
        if task.primary and checkpoint and (done % config.checkpoint_every == 0 or done == end):
            elapsed = state["seconds"] + time.perf_counter() - start
            save(checkpoint, config, task.states(), done, state["history"], elapsed, machine)
    state["seconds"] += time.perf_counter() - start
    task.close()
    task.model.eval()
    return TrainResult(task.model, state["history"], state["seconds"], end)


def late_change(history: list[dict], fraction: float = 0.25, metric: str = "rmse_hu") -> float:
    """How much validation ``metric`` still moved over the last ``fraction`` of a run: the relative
    change from the last evaluation at or before ``(1 - fraction)`` of the final step to the final
    one (negative: still improving). Near zero means the run has flattened out.

    >>> late_change([{"step": s, "validation": {"rmse_hu": v}} for s, v in
    ...              [(100, 40.0), (200, 30.0), (300, 29.0), (400, 28.5)]], fraction=0.5)
    -0.05
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    end = history[-1]["step"]
    before = [h for h in history if h["step"] <= (1 - fraction) * end]
    if not before:
        raise ValueError(f"no evaluation at or before step {(1 - fraction) * end:.0f} of {end}: "
                         "evaluate more often (eval_every) or take a larger fraction")
    first, last = before[-1]["validation"][metric], history[-1]["validation"][metric]
    return (last - first) / first


class LateChange(NamedTuple):
    """A relative change and its standard error (both fractions of the earlier mean)."""
    change: float
    error: float

    @property
    def errors(self) -> float:
        """How many standard errors the change is from zero."""
        if self.error == 0:
            return 0.0 if self.change == 0 else float("inf")
        return abs(self.change) / self.error

    @property
    def trend(self) -> str:
        """``"level"`` within two errors of zero (noise), else ``"falling"`` or ``"rising"``."""
        return "level" if self.errors < 2 else "falling" if self.change < 0 else "rising"


def late_mean_change(values: list[float]) -> LateChange:
    """For a noisy curve (one batch per point, such as the critic's Wasserstein estimate): the mean
    of its last quarter against the mean of the quarter before, as a relative change, with the
    standard error of that change from the scatter of the points in the two quarters,
    ``sqrt(s_last^2 / q + s_before^2 / q) / |mean_before|``. A change within about two errors of
    zero is noise: the curve has levelled off; several errors is a trend (``LateChange.trend``
    reads it so).

    >>> reading = late_mean_change([5.0, 3.0, 2.0, 2.0, 2.2, 1.8, 2.0, 2.0])
    >>> [round(x, 3) for x in reading], reading.trend
    ([0.0, 0.1], 'level')
    """
    if len(values) < 4:
        raise ValueError(f"a curve of {len(values)} point(s) has no two quarters of two points "
                         "to compare: evaluate more often (eval_every)")
    q = len(values) // 4
    before, last = np.asarray(values[-2 * q:-q]), np.asarray(values[-q:])
    scale = abs(before.mean())
    error = np.sqrt(before.var(ddof=1) / q + last.var(ddof=1) / q) / scale
    return LateChange(float((last.mean() - before.mean()) / scale), float(error))


def save(path: Path, config, states: dict, step: int, history: list, seconds: float,
         machine: dict) -> None:
    """Write a training checkpoint atomically (with the global random state and the ``machine``
    it was trained on, :func:`lib.checkpoints.machine_record`)."""
    atomic_save({"config": dataclasses.asdict(config), "step": step, "history": history,
                 "seconds": seconds, "rng": torch.get_rng_state(), "machine": machine}
                | {key: value.state_dict() for key, value in states.items()}, path)


def restore(path: Path, config, states: dict, machine: dict) -> dict:
    """Load a checkpoint of ``config``, written on ``machine``, into ``states``; returns its step,
    history and seconds."""
    saved = read_checkpoint(path)
    ours = dataclasses.asdict(config)
    changed = sorted(k for k in ours if k != "steps" and saved["config"].get(k) != ours[k])
    if changed:
        raise ValueError(f"{path} was written with different settings ({', '.join(changed)}); "
                         "delete it or pass resume=False (--restart) to start over")
    if saved["step"] > config.steps:
        raise ValueError(f"{path} already holds {saved['step']} steps, more than the "
                         f"{config.steps} asked for; ask for at least {saved['step']} steps, or "
                         "pass resume=False (--restart) to start over")
    theirs = saved.get("machine", machine)  # checkpoints before the record have none
    if theirs != machine:
        differ = sorted(k for k in machine.keys() | theirs.keys() if theirs.get(k) != machine.get(k))
        said = "; ".join(f"{k} {theirs.get(k)!r} there, {machine.get(k)!r} here" for k in differ)
        raise ValueError(f"{path} was trained to step {saved['step']} on another machine ({said}): "
                         "continued here, the run would splice two trajectories of its recipe "
                         "(the kernels and the thread count fix the last bits of every sum) that "
                         "no one machine makes. Resume it where it was written (with "
                         f"OMP_NUM_THREADS={theirs.get('threads')}), or pass resume=False "
                         "(--restart) to start over")
    for key, value in states.items():
        value.load_state_dict(saved[key])
    if "rng" in saved:  # checkpoints of the first denoiser loop have none (and need none)
        torch.set_rng_state(saved["rng"])
    return {"step": saved["step"], "history": saved["history"], "seconds": saved["seconds"]}


def read_checkpoint(path: str | Path) -> dict:
    """A training checkpoint's contents; a damaged file is refused by name."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to read it means the file is damaged
        raise ValueError(f"{path} cannot be read as a checkpoint ({type(err).__name__}); the file "
                         "is damaged: delete it to start over (or pass --restart)") from err
