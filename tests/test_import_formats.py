"""Every common generator format imports safely through ``load_generator`` / ``import_checkpoint``.

NVlabs snapshots are compared with NVlabs' own outputs: the shared fixture's (const noise) and
``fixtures/nvlabs_ada_g64_reference.pt`` (latent-sensitive images, clamped activations, discriminator
scores; made by ``fixtures/make_nvlabs_reference.py``). Refusals are checked on small pickles built
here that mimic the snapshots' persistent-object dicts; nothing in them ever runs.
"""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from editgan_core.formats import nvlabs
from editgan_core.formats.nvlabs import SavedModule, read_snapshot
from editgan_core.formats.rosinality import MEAN_LATENT_SAMPLES
from editgan_core.models.checkpoint import import_checkpoint, load_generator
from editgan_core.models.serialization import CheckpointError
from editgan_core.models.stylegan2 import Discriminator, Generator

TOL = 1e-3
REFERENCE = Path(__file__).parent / "fixtures" / "nvlabs_ada_g64_reference.pt"
NAMED_BY_SNAPSHOT = ("torch_utils", "dnnlib", "training")


@pytest.fixture(scope="module")
def snapshot_path(shared_fixtures) -> Path:
    return shared_fixtures / "nvlabs_ada_g64.pkl"


@pytest.fixture(scope="module")
def imported(snapshot_path):
    return import_checkpoint(snapshot_path)


@pytest.fixture(scope="module")
def expected(shared_fixtures):
    return torch.load(shared_fixtures / "nvlabs_ada_g64_expected.pt", weights_only=True)


# -- writing snapshot-like pickles without NVlabs' code ------------------------------------------------
class Persistent:
    """Pickles as NVlabs' persistence does: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, class_name: str, state: dict, module_src: str = "") -> None:
        self.meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": class_name,
                     "state": state}

    def __reduce__(self):
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,)


@contextmanager
def persistence_importable():
    """Lets ``pickle`` name ``torch_utils.persistence._reconstruct_persistent_obj`` while writing, then forgets it."""
    package, module = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called: the reader maps this global to its own stand-in")

    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    sys.modules.update({"torch_utils": package, "torch_utils.persistence": module})
    try:
        yield
    finally:
        del sys.modules["torch_utils"], sys.modules["torch_utils.persistence"]


def as_persistent(obj):
    """A read snapshot back in pickleable form (stand-ins replaced by what NVlabs would pickle)."""
    if isinstance(obj, SavedModule):
        return Persistent(obj.class_name, as_persistent(obj.state), obj.module_src)
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, as_persistent(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: as_persistent(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(as_persistent(v) for v in obj)
    return obj


def write_snapshot(path: Path, snapshot: dict, protocol: int = 4) -> Path:
    with persistence_importable():
        path.write_bytes(pickle.dumps(as_persistent(snapshot), protocol=protocol))
    return path


@pytest.fixture(scope="module")
def saved(snapshot_path) -> dict:
    return read_snapshot(snapshot_path)


def variant(saved: dict, tmp_path: Path, edit) -> Path:
    snapshot = copy.deepcopy(saved)
    edit(snapshot)
    return write_snapshot(tmp_path / "variant.pkl", snapshot)


# -- NVlabs parity -------------------------------------------------------------------------------------
def test_nvlabs_fixture_parity(snapshot_path, expected):
    generator, w_avg = load_generator(snapshot_path)
    noise = generator.stored_noise()
    with torch.no_grad():
        w = generator.style(expected["z"])
        assert (generator.w_to_wplus(w) - expected["w_from_z"]).abs().max() <= TOL
        image = generator.synthesis(generator.w_to_wplus(w), noise=noise).image
        assert (image - expected["image_from_z"]).abs().max() <= TOL
        truncated = w_avg.lerp(w, expected["truncation_psi"])  # NVlabs' default truncation_cutoff=None: all ws
        assert (generator.w_to_wplus(truncated) - expected["w_truncated"]).abs().max() <= TOL
        image = generator.synthesis(generator.w_to_wplus(truncated), noise=noise).image
        assert (image - expected["image_truncated"]).abs().max() <= TOL
        image = generator.synthesis(expected["wplus"], noise=noise).image
        assert (image - expected["image_from_wplus"]).abs().max() <= TOL


def test_nvlabs_latent_sensitive_clamped_and_discriminator_parity(imported):
    ref = torch.load(REFERENCE, weights_only=True)
    g, d = copy.deepcopy(imported.generator), imported.discriminator
    assert (ref["image"][0] - ref["image"][1]).abs().max() > 1  # these renders do depend on the latent
    unclamped = Generator.from_config({**imported.generator.config, "conv_clamp": None})
    unclamped.load_state_dict(g.state_dict())
    with torch.no_grad():
        assert (g.synthesis(ref["wplus"], noise=g.stored_noise()).image - ref["image"]).abs().max() <= TOL
        for model in (g, unclamped):
            for name, p in model.named_parameters():
                if name.endswith("noise.weight"):
                    p.mul_(ref["noise_gain"])
        loud = ref["image_loud_noise"]
        scale = loud.abs().max()
        assert (g.synthesis(ref["wplus"], noise=g.stored_noise()).image - loud).abs().max() <= TOL * scale
        assert (unclamped.synthesis(ref["wplus"], noise=g.stored_noise()).image - loud).abs().max() > 0.1 * scale
        assert (d(ref["image"]) - ref["d_image"]).abs().max() <= TOL
        loud_scores = ref["d_image_loud"]
        assert (d(ref["image"] * ref["image_gain"]) - loud_scores).abs().max() <= TOL * loud_scores.abs().max()


def test_converted_models_round_trip_through_safetensors(imported, tmp_path):
    g, d = imported.generator, imported.discriminator
    d2 = Discriminator.load(d.save(tmp_path / "d.safetensors"))
    g2, _ = load_generator(g.save(tmp_path / "g.safetensors"))
    assert g2.conv1.activate.clamp == 256
    images = torch.randn(4, 3, g.size, g.size)
    wplus = g.w_to_wplus(imported.w_avg.repeat(2, 1)) + torch.randn(2, g.n_latent, g.style_dim)
    with torch.no_grad():
        assert torch.equal(d(images), d2(images))
        assert torch.equal(g.synthesis(wplus, noise=g.stored_noise()).image,
                           g2.synthesis(wplus, noise=g2.stored_noise()).image)
    assert imported.metadata["conv_clamp"] == 256 and imported.discriminator.config["conv_clamp"] == 256


def test_python37_protocol3_snapshot_reads_the_same(saved, imported, tmp_path):
    path = write_snapshot(tmp_path / "py37.pkl", saved, protocol=3)  # most published snapshots: sets are reduced
    assert b"builtins\nset" in path.read_bytes()
    again = import_checkpoint(path)
    for k, v in imported.generator.state_dict().items():
        assert torch.equal(again.generator.state_dict()[k], v)
    assert torch.equal(again.w_avg, imported.w_avg)


# -- safety --------------------------------------------------------------------------------------------
def test_loading_a_snapshot_imports_no_module_it_names(snapshot_path):
    assert not [m for m in sys.modules if m.split(".")[0] in NAMED_BY_SNAPSHOT]
    before = set(sys.modules)
    load_generator(snapshot_path)
    imported_now = {m.split(".")[0] for m in set(sys.modules) - before}
    assert not imported_now & set(NAMED_BY_SNAPSHOT)
    raw = snapshot_path.read_bytes()
    assert all(name.encode() in raw for name in NAMED_BY_SNAPSHOT[:2])  # the file does name them


class Planted:
    """Would create ``marker`` when unpickled by a plain ``pickle.load``."""

    def __init__(self, marker: Path, how: str) -> None:
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "system":
            return os.system, (f"touch {self.marker}",)
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize(("how", "named"), [("system", r"(posix|nt|os)\.system"), ("exec", r"(builtins\.)?exec")])
def test_planted_pickle_creates_nothing_and_names_the_global(tmp_path, how, named):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Planted(marker, how)}))
    with pytest.raises(CheckpointError, match=rf"asks for the global {named}"):
        load_generator(path)
    torch.save({"g_ema": Planted(marker, how)}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=rf"asks for {named}\)"):
        load_generator(tmp_path / "model.pt")
    assert not marker.exists()


def test_code_stored_in_a_snapshot_is_never_run(saved, tmp_path):
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').close()\n"

    def plant(snapshot):
        for name in ("G_ema", "D"):
            snapshot[name].module_src = code + snapshot[name].module_src

    imported = import_checkpoint(variant(saved, tmp_path, plant))
    assert imported.discriminator is not None and not marker.exists()


# -- refusals ------------------------------------------------------------------------------------------
def test_refusals_name_what_was_found(saved, tmp_path):
    def stylegan3(snapshot):
        synthesis = snapshot["G_ema"].child("synthesis")
        synthesis.state["_modules"] = {"input": SavedModule("SynthesisInput", "", {}), "L0_36_512": None}

    def conditional(snapshot):
        snapshot["G_ema"].state["c_dim"] = 10

    def stylegan_xl(snapshot):
        snapshot["G_ema"].class_name = "SuperresGenerator"

    def resnet_generator(snapshot):
        snapshot["G_ema"].child("synthesis").child("b16").state["architecture"] = "resnet"

    def no_generator(snapshot):
        del snapshot["G_ema"], snapshot["G"]

    cases = [(stylegan3, "StyleGAN3"), (conditional, r"class-conditional \(c_dim=10\)"),
             (stylegan_xl, "StyleGAN-XL"), (resnet_generator, "b16 has architecture 'resnet'"),
             (no_generator, "no 'G_ema' or 'G' network")]
    for edit, message in cases:
        with pytest.raises(CheckpointError, match=message):
            load_generator(variant(saved, tmp_path, edit))


def test_unconvertible_discriminator_is_skipped_with_its_reason(saved, tmp_path):
    def skip_d(snapshot):
        snapshot["D"].child("b32").state["architecture"] = "skip"

    imported = import_checkpoint(variant(saved, tmp_path, skip_d))
    assert imported.discriminator is None and "b32" in imported.metadata["discriminator_skipped"]


def test_tensorflow_era_and_xl_pickles_are_refused_with_advice(tmp_path):
    for module, name, message in (("dnnlib.tflib.network", "Network", "TensorFlow-era.*legacy.py"),
                                  ("pg_modules.discriminator", "ProjectedDiscriminator", "StyleGAN-XL")):
        path = tmp_path / "net.pkl"
        # PROTO 2, GLOBAL module\nname\n, EMPTY_TUPLE, NEWOBJ, STOP: what such a pickle opens with.
        path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")\x81.")
        with pytest.raises(CheckpointError, match=message):
            load_generator(path)


def test_truncated_and_unknown_files_are_refused(snapshot_path, shared_fixtures, tmp_path):
    cases = [(snapshot_path, "truncated"), (shared_fixtures / "rosinality_trainpy_g64.pt", "truncated")]
    for source, message in cases:
        path = tmp_path / source.name
        path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        with pytest.raises(CheckpointError, match=message):
            load_generator(path)
    st = tmp_path / "g.safetensors"
    save_file({"x": torch.zeros(1000)}, str(st))
    (tmp_path / "cut.safetensors").write_bytes(st.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated safetensors"):
        load_generator(tmp_path / "cut.safetensors")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_generator(tmp_path / "empty.pkl")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    with pytest.raises(CheckpointError, match="not a checkpoint format"):
        load_generator(tmp_path / "model.onnx")


def test_format_is_told_by_content_not_suffix(snapshot_path, shared_fixtures, tmp_path):
    (tmp_path / "snapshot.pt").write_bytes(snapshot_path.read_bytes())
    assert import_checkpoint(tmp_path / "snapshot.pt").source_format == "nvlabs-stylegan2-ada"
    (tmp_path / "rosinality.pkl").write_bytes((shared_fixtures / "rosinality_g64.pt").read_bytes())
    assert import_checkpoint(tmp_path / "rosinality.pkl").source_format == "rosinality"


def test_reader_rejects_storages_that_are_not_storages():
    with pytest.raises(CheckpointError, match="storage"):
        nvlabs._rebuild_tensor(b"bytes", 0, (2,), (1,), False, OrderedDict())
    with pytest.raises(CheckpointError, match="only numeric"):
        nvlabs._dtype("O8", False, True)


# -- rosinality ----------------------------------------------------------------------------------------
def test_trainpy_checkpoint_loads_with_a_sane_mean_latent(shared_fixtures):
    generator, w_avg = load_generator(shared_fixtures / "rosinality_trainpy_g64.pt")
    _, w_again = load_generator(shared_fixtures / "rosinality_trainpy_g64.pt")
    assert torch.equal(w_avg, w_again)  # seeded: the same centre every time
    reference, stored = load_generator(shared_fixtures / "rosinality_g64.pt")
    for k, v in reference.state_dict().items():
        assert torch.equal(generator.state_dict()[k], v)
    # The fixture's stored latent_avg is the mean of the same mapping: the estimates must agree.
    assert (w_avg - stored).abs().max() < 0.15 * stored.abs().max()
    imported = import_checkpoint(shared_fixtures / "rosinality_trainpy_g64.pt")
    assert imported.source_format == "rosinality-train.py" and imported.discriminator is None
    assert str(MEAN_LATENT_SAMPLES) in imported.metadata["w_avg"] and imported.metadata["args"]["arch"] == "stylegan2"


def test_trainpy_checkpoint_keeps_its_discriminator(tmp_path):
    channels = {4: 16, 8: 16, 16: 8, 32: 8}
    g, d = Generator(32, 16, 2, channels=channels), Discriminator(32, channels=channels)
    torch.save({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g.state_dict(), "g_optim": {}, "d_optim": {},
                "args": argparse.Namespace(size=32, lr=0.002), "ada_aug_p": 0.1}, tmp_path / "010000.pt")
    imported = import_checkpoint(tmp_path / "010000.pt")
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(imported.discriminator(images), d.eval()(images))
    assert imported.discriminator.config["channels"] == {str(k): v for k, v in channels.items()}
    assert imported.metadata["ada_aug_p"] == 0.1
