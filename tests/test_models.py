"""The denoisers: shapes, receptive fields, piecewise linearity, transfer, shipped checkpoints."""

import json

import pytest
import torch
from torch import nn

from lib.checkpoints import cpu_record, publish, scan_record, sha256
from lib.ct.protocol import PAPER
from lib.ct.units import MU_WATER
from lib.models import (CPCE2D, CPCE3D, DENOISERS, CheckpointError, Critic, Denoiser, build, load,
                        receptive_field, slab_of, transfer_2d_to_3d)
from lib.models.inference import denoise
from lib.models.scaling import MuScaling
from lib.storage import atomic_save

ALLOWED = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, nn.ReLU, nn.LeakyReLU, MuScaling,
           nn.Sequential, nn.ModuleList, nn.Flatten)


def sample_input(model, size=48, batch=2):
    depth = model.slab
    shape = (batch, 1, depth, size, size) if depth else (batch, 1, size, size)
    return MU_WATER * torch.rand(shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", DENOISERS)
def test_mu_in_mu_out_same_size(name):
    model = build(name)
    y = model(sample_input(model))
    assert y.shape == (2, 1, 48, 48)


@pytest.mark.parametrize("name", DENOISERS)
def test_receptive_field_is_measured_and_documented(name):
    model = build(name)
    field = receptive_field(model, depth=model.slab)
    assert field[-2:] == (model.receptive_field, model.receptive_field)
    if model.slab:
        assert field[0] == model.slab
    # outside the field the output does not change
    x = sample_input(model, size=64, batch=1).requires_grad_(True)
    model(x)[0, 0, 32, 32].backward()
    r = model.receptive_field // 2
    support = x.grad[0, 0].abs().sum(0) if x.dim() == 5 else x.grad[0, 0].abs()
    support[32 - r:32 + r + 1, 32 - r:32 + r + 1] = 0
    assert float(support.max()) == 0.0


@pytest.mark.parametrize("name", DENOISERS)
def test_every_denoiser_keeps_the_contract(name):
    model = build(name)
    assert isinstance(model, Denoiser) and slab_of(model) == model.slab
    assert model.slab == (9 if name == "cpce3d" else None)


class _Shift(nn.Module):  # a user's own 2-D network, without the contract's attributes
    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return x + self.b


def test_a_module_without_the_contract_is_a_2d_network_and_one_with_it_is_checked():
    plain = _Shift()
    assert not isinstance(plain, Denoiser) and slab_of(plain) is None
    slabs = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    assert torch.equal(denoise(plain, slabs), slabs[:, 1] + 1)  # the centre slice of each slab
    declared = _Shift()
    declared.slab, declared.receptive_field = 3, 1
    assert isinstance(declared, Denoiser) and slab_of(declared) == 3
    with pytest.raises(ValueError, match=r"needs slabs \(N, 3, H, W\)"):
        denoise(declared, slabs[:, :2])


@pytest.mark.parametrize("name", DENOISERS)
def test_built_only_from_piecewise_linear_parts(name):
    for module in build(name).modules():
        assert isinstance(module, ALLOWED) or type(module).__module__.startswith("lib.models"), module


@pytest.mark.parametrize("depth", CPCE3D.SLABS)
def test_2d_to_3d_transfer_computes_the_2d_network(depth):
    cpce2d = CPCE2D()
    with torch.no_grad():
        for p in cpce2d.parameters():
            p.normal_(0, 0.1)
    cpce3d = transfer_2d_to_3d(cpce2d, slab=depth)
    slab = sample_input(cpce3d, size=40)
    assert torch.allclose(cpce3d(slab), cpce2d(slab[:, :, depth // 2]), rtol=1e-5, atol=1e-9)
    deeper = torch.rand(2, 9, 40, 40) * 0.02  # a 9-slice slab: the network sees its centre slices
    assert torch.allclose(denoise(cpce3d, deeper), denoise(cpce2d, deeper), rtol=1e-5, atol=1e-9)
    # trained (perturbed) off the transfer, the 3-D network uses the neighbouring slices
    with torch.no_grad():
        cpce3d.convs[0].weight[:, :, 0] += 0.1
    assert not torch.allclose(cpce3d(slab), cpce2d(slab[:, :, depth // 2]), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("depth", CPCE3D.SLABS)
def test_cpce3d_sees_exactly_its_slab(depth):
    model = build("cpce3d", slab=depth)
    assert receptive_field(model, depth=depth) == (depth, 17, 17)
    assert slab_of(model) == depth


def test_bias_free_cpce_is_positively_homogeneous():
    model = CPCE2D()
    x = sample_input(model)
    assert torch.allclose(model(3.0 * x), 3.0 * model(x), rtol=1e-5, atol=1e-7)  # float32


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="slabs"):
        CPCE3D()(torch.zeros(1, 1, 5, 32, 32))
    with pytest.raises(ValueError, match="slab of 3, 5, 7, 9"):
        CPCE3D(slab=4)
    with pytest.raises(ValueError, match="only cpce3d"):
        build("chen", slab=3)
    with pytest.raises(ValueError, match="divisible by 8"):
        Critic(60)
    with pytest.raises(ValueError, match="unknown architecture"):
        build("unet")
    assert Critic(32)(torch.zeros(3, 1, 32, 32)).shape == (3, 1)


@pytest.fixture
def shipped(tmp_path):
    """A manifest with one checkpoint, as the training command writes it."""
    model = build("chen")
    path = tmp_path / "chen.pt"
    atomic_save({"model": model.state_dict()}, path)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"chen": {"file": "chen.pt", "architecture": "chen",
                                             "sha256": sha256(path), "scan": scan_record()}}))
    return model, path, manifest


def test_checkpoint_round_trip(shipped):
    model, _, manifest = shipped
    loaded = load("chen", manifest_path=manifest)
    assert not loaded.training
    x = sample_input(model)
    assert torch.equal(loaded(x), model(x))


def test_corrupted_or_missing_checkpoints_are_refused(shipped):
    _, path, manifest = shipped
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the manifest"):
        load("chen", manifest_path=manifest)
    with pytest.raises(CheckpointError, match="no shipped checkpoint named 'unet'"):
        load("unet", manifest_path=manifest)
    path.unlink()
    with pytest.raises(CheckpointError, match="file is missing"):
        load("chen", manifest_path=manifest)


def test_a_checkpoint_from_other_scans_or_stale_sources_is_refused(shipped):
    model, _, manifest = shipped
    entries = json.loads(manifest.read_text())
    other = scan_record(size=2 * PAPER.size, pixel_mm=PAPER.pixel_mm / 2)  # another grid
    entries["chen"]["scan"] = other
    manifest.write_text(json.dumps(entries))
    with pytest.raises(CheckpointError, match=rf"other scans.*size {other['size']} \(the book's"):
        load("chen", manifest_path=manifest)
    del entries["chen"]["scan"]
    manifest.write_text(json.dumps(entries))
    with pytest.raises(CheckpointError, match="no scan protocol recorded"):
        load("chen", manifest_path=manifest)
    # a network made with a shipped source is refused once that source is reshipped
    publish("features", {"model": {"w": torch.zeros(1)}}, {"architecture": "features"}, "cpu", manifest)
    digest = json.loads(manifest.read_text())["features"]["sha256"]
    publish("chen", {"model": model.state_dict()},
            {"architecture": "chen", "depends_on": {"features": digest}}, "cpu", manifest)
    assert torch.equal(load("chen", manifest_path=manifest)(sample_input(model)),
                       model(sample_input(model)))
    publish("features", {"model": {"w": torch.ones(1)}}, {"architecture": "features"}, "cpu", manifest)
    with pytest.raises(CheckpointError, match="made with 'features'.*reshipped since"):
        load("chen", manifest_path=manifest)


def test_the_manifest_records_which_cpu_trained_a_checkpoint(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 fma avx512f\n\n"
                       "processor\t: 1\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 fma avx512f\n")
    assert cpu_record(cpuinfo) == {"cpu": "Some CPU", "simd": ["avx2", "fma", "avx512f"]}
    manifest = tmp_path / "manifest.json"
    publish("features", {"model": {"w": torch.zeros(1)}}, {"architecture": "features"}, "cpu", manifest)
    hardware = json.loads(manifest.read_text())["features"]["hardware"]
    assert {k: hardware[k] for k in ("cpu", "simd")} == cpu_record()
