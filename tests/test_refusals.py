"""What the library refuses (book/reproduce.md, "What the library refuses"): one probe per case.

Each probe is an input that would otherwise give a wrong answer quietly, lose data or fail with a
message that does not say what to do. Every probe must raise an error that names the problem.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from torch import nn

from dicom_files import write_ct_slice, write_series
from lib import ct
from lib.ct.datasets import DoseProtocol, phantom_pairs
from lib.linearity import (UnsupportedNonlinearity, activation_pattern, enumerate_regions,
                           jacobian, linearize)
from lib.models import ChenCNN, build
from lib.checkpoints import DENOISER_LOADER, CheckpointError, publish, read_weights
from lib.storage import atomic_save, remove_stale_temporaries

F64 = torch.float64


# --- the tracing: an allow-list of exactly piecewise linear operations ------------------------


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


REFUSED = {
    "PReLU": nn.PReLU(),
    "Threshold": nn.Threshold(0.1, 0.0),
    "Softsign": nn.Softsign(),
    "instance_norm": nn.InstanceNorm2d(2),
    "group_norm": nn.GroupNorm(1, 2),
    "adaptive_max_pool": nn.AdaptiveMaxPool2d(6),
    "abs": Lambda(torch.abs),
    "product": Lambda(lambda x: x * x),
    "max": Lambda(lambda x: torch.max(x, 2 * x)),
    "product of branches": Lambda(lambda x: x[:, :1] * torch.relu(x[:, 1:])),
    "input-dependent weights": Lambda(lambda x: torch.nn.functional.conv2d(x, x[:1, :, :3, :3])),
    "rounded division": Lambda(lambda x: torch.div(x, 0.1, rounding_mode="floor")),
    "division by the input": Lambda(lambda x: x / (1 + x[:, :1])),
    "tanh": nn.Tanh(),
    "dropout": nn.Dropout(0.5).train(),
}


def _net(layer: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), layer, nn.Conv2d(2, 1, 1,
                                                                                 padding=0))


@pytest.mark.parametrize("name", list(REFUSED))
def test_operations_off_the_allow_list_are_refused_by_name(name):
    net = _net(REFUSED[name]).double()
    x = torch.rand(1, 1, 6, 6, dtype=F64)
    word = {"adaptive_max_pool": "max_pool", "max": "max", "product of branches": "product",
            "Threshold": "threshold", "dropout": "dropout", "input-dependent weights": "product",
            "rounded division": "rounded division",
            "division by the input": "division by an input-dependent"}.get(name, name)
    probes = [lambda: activation_pattern(net, x), lambda: jacobian(net, x, field=5)]
    if name != "dropout":  # these two analyse an eval-mode copy, where dropout does nothing
        probes += [lambda: enumerate_regions(net, x, x, progress=False),
                   lambda: linearize(net, x)]
    for probe in probes:
        with pytest.raises(UnsupportedNonlinearity, match=word):
            probe()


@pytest.mark.parametrize("name", ["chen", "redcnn", "wganvgg", "cpce2d", "cpce3d"])
def test_the_shipped_architectures_are_on_the_allow_list(name):
    net = build(name).double().eval()
    shape = (1, 1, 9, 24, 24) if name == "cpce3d" else (1, 1, 24, 24)
    assert activation_pattern(net, 0.02 * torch.rand(shape, dtype=F64)).shape[1] > 0


def test_allowed_linear_pieces_pass():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.LeakyReLU(0.1),
                        nn.AvgPool2d(2), nn.Upsample(scale_factor=2), nn.Conv2d(2, 1, 1),
                        Lambda(lambda x: 0.5 * torch.cat([x, -x], 1).sum(1, keepdim=True) + x))
    net = net.double().eval()
    x = torch.rand(1, 1, 8, 8, dtype=F64)
    assert activation_pattern(net, x).shape == (1, 2 * 64)
    J = jacobian(net, x, field=8)
    v = torch.randn_like(x)
    assert torch.allclose(J @ v.flatten(), torch.func.jvp(net, (x,), (v,))[1].flatten())


def test_batchnorm_in_training_mode_is_refused_without_touching_its_statistics():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU())
    before = {k: v.clone() for k, v in net[1].state_dict().items()}
    for probe in (lambda: activation_pattern(net, torch.rand(2, 1, 6, 6)),
                  lambda: jacobian(net, torch.rand(1, 1, 6, 6), field=5)):
        with pytest.raises(UnsupportedNonlinearity, match=r"model\.eval\(\)"):
            probe()
    assert all(torch.equal(before[k], v) for k, v in net[1].state_dict().items())


def test_a_jacobian_field_smaller_than_the_receptive_field_is_refused():
    net = ChenCNN(width=8).double()  # receptive field 13
    x = 0.02 * torch.rand(1, 1, 16, 16, dtype=F64)
    for field in (5, 11, 12):
        with pytest.raises(ValueError, match=f"field={field} is smaller"):
            jacobian(net, x, field=field)
    assert jacobian(net, x, field=13).shape == (256, 256)


def _nan_at(x, where=(0, 0, 2, 2), value=float("nan")):
    x = x.clone()
    x[where] = value
    return x


@pytest.mark.parametrize("probe, word", [
    (lambda n, x: activation_pattern(n, _nan_at(x)), "x has 1 NaN"),
    (lambda n, x: activation_pattern(n, _nan_at(x, value=float("inf"))), "x has 1 NaN or inf"),
    (lambda n, x: enumerate_regions(n, _nan_at(x), x, progress=False), "x0"),
    (lambda n, x: enumerate_regions(n, x, _nan_at(x), progress=False), "direction"),
    (lambda n, x: enumerate_regions(n, x, x, 0.0, float("inf"), progress=False), "t1"),
    (lambda n, x: enumerate_regions(n, x, x, float("nan"), 1.0, progress=False), "t0"),
    (lambda n, x: jacobian(n, _nan_at(x)), "x has 1"),
    (lambda n, x: linearize(n, _nan_at(x)), "x0"),
    (lambda n, x: enumerate_regions(n, x, x, chunks=0, progress=False), "chunks"),
    (lambda n, x: jacobian(n, x[0]), r"\(1, 12, 12\)"),
    (lambda n, x: jacobian(n, x, field=0), "field"),
    (lambda n, x: activation_pattern(n, torch.rand(1, 2, 12, 12)), r"\(1, 2, 12, 12\)"),
])
def test_bad_analysis_inputs_are_refused(probe, word):
    net = ChenCNN().eval()
    with pytest.raises(ValueError, match=word):
        probe(net, 0.02 * torch.rand(1, 1, 12, 12))


def test_nan_parameters_are_refused():
    net = ChenCNN()
    with torch.no_grad():
        net.net[1].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"net\.1\.weight holds NaN"):
        activation_pattern(net, torch.rand(1, 1, 12, 12))


def test_a_network_without_relu_is_affine_one_region():
    net = nn.Conv2d(1, 1, 3, padding=1).double()
    x = torch.rand(1, 1, 8, 8, dtype=F64)
    assert activation_pattern(net, x).shape == (1, 0)
    walk = enumerate_regions(net, x, torch.rand_like(x), progress=False)
    assert walk.n_regions == 1
    assert jacobian(net, x, field=3).shape == (64, 64)


# --- CT inputs ------------------------------------------------------------------------------


def _edited(path: Path, **tags) -> Path:
    ds = pydicom.dcmread(path)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path)
    return path


def _slice(tmp_path: Path, name="a.dcm", **kwargs) -> Path:
    write_ct_slice(tmp_path / name, np.zeros((8, 8)), 0.0, "1.2.3.4", **kwargs)
    return tmp_path / name


@pytest.mark.parametrize("tags, word", [
    ({"Modality": "MR"}, "modality 'MR', not CT"),
    ({"RescaleSlope": "NaN"}, "RescaleSlope nan"),
    ({"RescaleSlope": 0}, "RescaleSlope 0"),
    ({"PixelSpacing": [0, 0.7]}, "PixelSpacing is 0"),
    ({"SliceThickness": -2.0}, "slice spacing is -2"),
])
def test_read_dicom_refuses_what_would_be_misread(tmp_path, tags, word):
    with pytest.raises(ct.DicomError, match=word):
        ct.read_dicom(_edited(_slice(tmp_path), **tags))


@pytest.mark.parametrize("tags, word", [
    ({"PixelSpacing": [0.5, 0.5]}, "differ in pixel spacing"),
    ({"ImageOrientationPatient": [0, 1, 0, 1, 0, 0]}, "orientation"),
])
def test_read_dicom_refuses_series_that_change_between_slices(tmp_path, tags, word):
    write_series(tmp_path, np.zeros((3, 8, 8)))
    _edited(sorted(tmp_path.glob("*.dcm"))[1], **tags)
    with pytest.raises(ct.DicomError, match=word):
        ct.read_dicom(tmp_path)


def test_a_lone_slice_needs_no_slice_thickness(tmp_path):
    mu, (dz, dy, dx) = ct.read_dicom(_slice(tmp_path, drop=("SliceThickness",)))
    assert mu.shape == (1, 8, 8) and np.isnan(dz) and (dy, dx) == (0.7, 0.7)


@pytest.mark.parametrize("probe, word", [
    (lambda s, mu: s.scan(mu, I0=float("inf")), "I0"),
    (lambda s, mu: s.scan(mu, I0=0.0), "I0"),
    (lambda s, mu: s.scan(-mu, I0=1e4), "mu >= 0"),
    (lambda s, mu: s.scan(_nan_at(mu, (2, 2)), I0=1e4), "1 NaN/inf"),
    (lambda s, mu: s.scan(mu, I0=1e4, electronic_noise=float("nan")), "electronic_noise"),
    (lambda s, mu: s.scan(mu, I0=1e4, min_counts=float("nan")), "min_counts"),
    (lambda s, mu: ct.Scanner(size=16.5), "size must be a whole number"),
    (lambda s, mu: ct.Scanner(size=16, n_detectors=-3), "n_detectors"),
    (lambda s, mu: ct.Scanner(size=16, n_angles=2.5), "n_angles"),
    (lambda s, mu: ct.Scanner(size=16, pixel_mm=float("nan")), "pixel_mm"),
    (lambda s, mu: ct.thorax_phantom(128, 3.0, z_mm=float("nan")), "z_mm"),
    (lambda s, mu: ct.thorax_phantom(128.5, 3.0), "size must be a whole number"),
    (lambda s, mu: ct.insert_lesion(mu, (100, 100), 9.0, 0.007, 1.5), "outside the image"),
    (lambda s, mu: ct.insert_lesion(mu, (8, 8), 9.0, float("nan"), 1.5), "contrast"),
    (lambda s, mu: ct.insert_lesion(mu, (8, 8), float("nan"), 0.007, 1.5), "diameter_mm"),
])
def test_physics_inputs_are_refused(probe, word):
    scanner = ct.Scanner(size=16, pixel_mm=1.0, n_angles=8)
    with pytest.raises(ValueError, match=word):
        probe(scanner, torch.full((16, 16), 0.01))


# --- shipping and the manifest ------------------------------------------------------------------


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((3,), value)}}


def test_publish_keeps_the_old_pair_until_the_new_one_is_complete(tmp_path, monkeypatch):
    manifest = tmp_path / "manifest.json"
    publish("m", _state(1.0), {"steps": 1}, "cpu", manifest)
    import lib.storage

    real = lib.storage.os.replace

    def killed_at_commit(src, dst):  # the manifest write dies
        if Path(dst).name == "manifest.json":
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(lib.storage.os, "replace", killed_at_commit)
    with pytest.raises(KeyboardInterrupt):
        publish("m", _state(2.0), {"steps": 2}, "cpu", manifest)
    monkeypatch.undo()
    weights, entry = read_weights("m", DENOISER_LOADER, manifest)
    assert entry["steps"] == 1 and float(weights["w"][0]) == 1.0  # the old pair, intact

    from lib import checkpoints

    def killed_after_commit(src, dst):  # the rename of the weights dies
        if str(src).endswith(".pending"):
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(checkpoints.os, "replace", killed_after_commit)
    with pytest.raises(KeyboardInterrupt):
        publish("m", _state(3.0), {"steps": 3}, "cpu", manifest)
    monkeypatch.undo()
    weights, entry = read_weights("m", DENOISER_LOADER, manifest)  # completes the interrupted rename
    assert entry["steps"] == 3 and float(weights["w"][0]) == 3.0
    assert not (tmp_path / "m.pt.pending").exists()


def _publish_many(manifest: str, prefix: str, n: int) -> None:
    for k in range(n):
        publish(f"{prefix}{k}", _state(float(k)), {}, "cpu", Path(manifest))


def test_two_processes_publishing_at_once_keep_every_entry(tmp_path):
    manifest = tmp_path / "manifest.json"
    context = mp.get_context("fork")
    workers = [context.Process(target=_publish_many, args=(str(manifest), p, 40))
               for p in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert all(w.exitcode == 0 for w in workers)
    assert len(json.loads(manifest.read_text())) == 80


def test_the_temporary_file_of_a_killed_save_is_cleaned_up(tmp_path):
    dead = tmp_path / ".x.pt.999999999.abcd.tmp"  # no such process
    alive = tmp_path / f".x.pt.{os.getpid()}.efgh.tmp"  # a save in progress
    dead.write_bytes(b"partial")
    alive.write_bytes(b"partial")
    atomic_save({"w": 1}, tmp_path / "x.pt")
    assert not dead.exists() and alive.exists() and (tmp_path / "x.pt").exists()
    assert remove_stale_temporaries(tmp_path / "x.pt") == []


@pytest.mark.parametrize("text, word", [("{not json", "not valid JSON"),
                                        ('{"m": {"file": "m.pt"}}', "lack 'file' or 'sha256'")])
def test_a_damaged_manifest_is_named(tmp_path, text, word):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(CheckpointError, match=word):
        read_weights("m", DENOISER_LOADER, tmp_path / "manifest.json")


def test_each_loader_points_to_the_other_for_the_other_kind():
    import lib.invariance
    import lib.models

    with pytest.raises(CheckpointError, match=r"lib\.invariance\.load_sampler\('inv-chen-l1'\)"):
        lib.models.load("inv-chen-l1")
    with pytest.raises(CheckpointError, match=r"lib\.models\.load\('chen'\)"):
        lib.invariance.load_sampler("chen")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_named():
    import lib.models

    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        lib.models.load("chen", device="cuda")


# --- training and caches --------------------------------------------------------------------


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CTBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_resuming_more_steps_than_asked_is_refused_not_mislabelled(private_cache):
    from lib.train import TrainConfig, train_denoiser

    config = TrainConfig(model="chen", steps=3, batch_size=2, patch_size=16, n_train=1, n_val=1,
                         size=64, eval_every=3, checkpoint_every=3)
    work = private_cache / "chen.ckpt"
    train_denoiser(config, checkpoint=work, progress=False)
    shorter = TrainConfig(**{**config.__dict__, "steps": 1})
    with pytest.raises(ValueError, match="already holds 3 steps, more than the 1"):
        train_denoiser(shorter, checkpoint=work, progress=False)
    assert train_denoiser(shorter, checkpoint=work, progress=False, resume=False).steps_done == 1
    work.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=f"{work}.*delete it"):
        train_denoiser(config, checkpoint=work, progress=False)


def test_a_damaged_cached_dataset_is_named(private_cache):
    protocol = DoseProtocol(size=64, pixel_mm=6.0)
    phantom_pairs("test", 1, protocol, progress=False)
    (cached,) = (private_cache / "cache" / "datasets").glob("*.pt")
    cached.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=f"{cached}.*delete it"):
        phantom_pairs("test", 1, protocol, progress=False)


# --- the chapter runner and its parameters -----------------------------------------------------


@pytest.mark.parametrize("only, word", [([""], "empty chapter name"), (["9"], "matches no chapter"),
                                        (["nothing"], "matches no chapter")])
def test_lib_run_refuses_unknown_or_empty_chapters(only, word):
    from lib.notebooks import chapter_notebooks
    from lib.run import select

    with pytest.raises(SystemExit, match=word):
        select(chapter_notebooks(), only)
    assert [nb.stem[:2] for nb in select(chapter_notebooks(), ["2"])] == ["02"]


@pytest.mark.parametrize("value, word", [("x", "of type int"), (0, "at least 1"),
                                         (2.5, "of type int"), (True, "of type int")])
def test_parameters_of_the_wrong_type_are_refused(value, word):
    from lib.profiles import resolve

    with pytest.raises(ValueError, match=f"image_size={value!r}.*{word}"):
        resolve("simulating_ct", "quick", image_size=value)
    assert resolve("simulating_ct", "quick", image_size=96).image_size == 96
