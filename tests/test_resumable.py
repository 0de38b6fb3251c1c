"""The shared resumable training loop (lib.train.resumable), on a toy task that needs every part
of it: batches fixed by (seed, step), and noise drawn from the global random state (as dropout
would), so a resumed run matches only if the checkpoint restores weights, optimizer and RNG."""

from dataclasses import dataclass

import pytest
import torch

from lib.train.resumable import Task, read_checkpoint, run


@dataclass
class ToyConfig:
    steps: int = 8
    seed: int = 0
    lr: float = 0.05
    eval_every: int = 4
    checkpoint_every: int = 2


class ToyTask(Task):
    """Least squares fit of a line with Adam, targets jittered by the global random state."""

    def __init__(self, config, device):
        self.config = config
        self.model = torch.nn.Linear(3, 1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.prepared = []

    def prepare(self, fresh):
        self.prepared.append(fresh)

    def step(self, step):
        g = torch.Generator().manual_seed(self.config.seed * 1000 + step)
        x = torch.randn(16, 3, generator=g)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(16, 1)  # global RNG
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item(), {"mse": loss.item()}

    def evaluate(self):
        return {"weight_norm": float(self.model.weight.detach().norm())}


def toy(config, checkpoint=None, **options):
    return run(ToyTask, config, checkpoint, device="cpu", progress=False, **options)


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("k", [1, 2, 5, 7])
def test_interrupted_at_step_k_and_resumed_equals_uninterrupted(tmp_path, k):
    straight = toy(ToyConfig())
    ckpt = tmp_path / "toy.ckpt"
    first = toy(ToyConfig(), ckpt, stop_after=k)
    assert first.steps_done == k and read_checkpoint(ckpt)["step"] == k
    resumed = toy(ToyConfig(), ckpt)
    assert resumed.steps_done == 8
    assert torch.equal(flat(resumed.model), flat(straight.model))
    assert resumed.history == straight.history
    assert [h["step"] for h in resumed.history] == [4, 8]
    assert not resumed.model.training


def test_a_checkpoint_without_the_random_state_does_not_resume_exactly(tmp_path):
    """The control: the toy task does depend on the restored RNG, so the test above can fail."""
    straight = toy(ToyConfig())
    ckpt = tmp_path / "toy.ckpt"
    toy(ToyConfig(), ckpt, stop_after=3)
    saved = read_checkpoint(ckpt)
    del saved["rng"]
    torch.save(saved, ckpt)
    torch.manual_seed(12345)
    resumed = toy(ToyConfig(), ckpt)
    assert not torch.equal(flat(resumed.model), flat(straight.model))


def test_steps_may_grow_and_the_data_is_prepared_after_restoring(tmp_path):
    ckpt = tmp_path / "toy.ckpt"
    toy(ToyConfig(steps=4), ckpt)
    longer = toy(ToyConfig(), ckpt)
    assert torch.equal(flat(longer.model), flat(toy(ToyConfig()).model))
    tasks = []
    run(lambda c, d: tasks.append(ToyTask(c, d)) or tasks[-1], ToyConfig(), ckpt, device="cpu",
        progress=False)
    assert tasks[0].prepared == [False]  # resumed at step 8: not a fresh start


def test_other_settings_more_steps_and_damaged_files_are_refused(tmp_path):
    ckpt = tmp_path / "toy.ckpt"
    toy(ToyConfig(), ckpt, stop_after=4)
    with pytest.raises(ValueError, match=r"different settings \(lr\).*--restart"):
        toy(ToyConfig(lr=0.1), ckpt)
    with pytest.raises(ValueError, match="already holds 4 steps, more than the 3"):
        toy(ToyConfig(steps=3), ckpt)
    restarted = toy(ToyConfig(lr=0.1), ckpt, resume=False)
    assert torch.equal(flat(restarted.model), flat(toy(ToyConfig(lr=0.1)).model))
    assert read_checkpoint(ckpt)["config"]["lr"] == 0.1
    ckpt.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=f"{ckpt}.*damaged"):
        toy(ToyConfig(), ckpt)


def test_a_checkpoint_from_another_machine_or_thread_count_is_refused(tmp_path):
    """A resume elsewhere would splice two trajectories: another thread count (really set) and
    another CPU (the record edited) are refused, by what differs; the same machine resumes."""
    ckpt = tmp_path / "toy.ckpt"
    toy(ToyConfig(), ckpt, stop_after=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        with pytest.raises(ValueError, match=rf"another machine \(threads {threads} there, "
                                             rf"{threads + 1} here\).*OMP_NUM_THREADS={threads}"):
            toy(ToyConfig(), ckpt)
    finally:
        torch.set_num_threads(threads)
    saved = torch.load(ckpt, weights_only=True)
    saved["machine"] = saved["machine"] | {"cpu": "Some Other CPU", "simd": ["sse4_2"]}
    torch.save(saved, tmp_path / "elsewhere.ckpt")
    with pytest.raises(ValueError, match=r"cpu 'Some Other CPU' there.*simd \['sse4_2'\] there"):
        toy(ToyConfig(), tmp_path / "elsewhere.ckpt")
    assert toy(ToyConfig(), ckpt).steps_done == 8
