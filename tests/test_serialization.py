"""Every network saves and loads through one contract: config captured at construction, checked, frozen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from editgan_core.models import serialization
from editgan_core.models.attribute_net import AttributeNet
from editgan_core.models.checkpoint import load_generator
from editgan_core.models.encoder import Encoder
from editgan_core.models.segmenter import PixelEnsemble
from editgan_core.models.serialization import CheckpointError, ModelMixin, read_metadata, register_config
from editgan_core.models.stylegan2 import Discriminator, Generator

REPO = Path(__file__).resolve().parents[1]
CHANNELS = {4: 16, 8: 16, 16: 8}


def tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(16, 16, 2, channels=CHANNELS)


def test_config_is_the_constructor_arguments_as_json():
    g = tiny_generator()
    assert g.config == {"size": 16, "style_dim": 16, "n_mlp": 2, "channel_multiplier": 2, "blur_kernel": [1, 3, 3, 1],
                        "lr_mlp": 0.01, "channels": {"4": 16, "8": 16, "16": 8}, "conv_clamp": None}
    rebuilt = Generator.from_config(g.config)
    assert rebuilt.config == g.config and rebuilt.channels == g.channels
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in g.state_dict().items()}
    config = g.config
    config["size"] = 1024  # a copy: the network's own config cannot be changed from outside
    assert g.config["size"] == 16
    ens = PixelEnsemble([8, 8], 3, members=2, hidden=(6, 4))
    assert ens.config == {"feature_channels": [8, 8], "num_classes": 3, "members": 2, "hidden": [6, 4],
                          "upsample": "bilinear"}


def test_round_trip_returns_a_frozen_eval_copy_with_metadata(tmp_path):
    g = tiny_generator().train()
    path = g.save(tmp_path / "g.safetensors", metadata={"step": "7"})
    loaded = Generator.load(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in g.state_dict().items())
    meta = read_metadata(path)
    assert meta["step"] == "7" and json.loads(meta["config"]) == g.config
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # no temporary file left behind
    trainable = Generator.load(path).train().requires_grad_(True)  # what training code asks for
    assert trainable.training and all(p.requires_grad for p in trainable.parameters())


def test_a_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    g = tiny_generator()
    path = g.save(tmp_path / "g.safetensors")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(serialization, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        Generator(16, 16, 2, channels=CHANNELS).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]


def test_bad_files_are_named(tmp_path):
    g = tiny_generator()
    with pytest.raises(CheckpointError, match="not found"):
        Generator.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        Generator.load(tmp_path / "junk.safetensors")
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(bare))
    with pytest.raises(CheckpointError, match="no 'config' metadata"):
        Encoder.load(bare)
    path = g.save(tmp_path / "g.safetensors")
    with pytest.raises(CheckpointError, match="not a PixelEnsemble file"):
        PixelEnsemble.load(path)
    with pytest.raises(CheckpointError, match="does not build a Discriminator"):
        Discriminator.load(path)  # a generator's config has arguments a discriminator does not take
    other = Generator(16, 16, 2, channels={4: 16, 8: 8, 16: 8}).save(tmp_path / "other.safetensors")
    tensors = load_file(path)
    save_file(tensors, str(other), metadata=read_metadata(other))  # weights of one, config of another
    with pytest.raises(CheckpointError, match=r"wrong shapes: convs\.0\.conv\.weight: expected"):
        Generator.load(other)
    huge = tmp_path / "huge.safetensors"  # a config asking for a 36 TB layer is refused before allocating it
    save_file(tensors, str(huge), metadata={"config": json.dumps({**g.config, "channels": {"4": 10**6, "8": 10**6}})})
    with pytest.raises(CheckpointError, match=r"conv1\.conv\.weight: expected \(1, 1000000, 1000000, 3, 3\)"):
        Generator.load(huge)
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata={"config": "{not json"})
    with pytest.raises(CheckpointError, match="not JSON"):
        Generator.load(broken)


def test_every_network_must_capture_its_config():
    with pytest.raises(TypeError, match="@register_config"):
        class Forgot(ModelMixin, nn.Module):
            def __init__(self, width: int) -> None:
                super().__init__()

    class Odd(ModelMixin, nn.Module):
        @register_config
        def __init__(self, where: object) -> None:
            super().__init__()

    with pytest.raises(TypeError, match="cannot be stored in a config"):
        Odd(object())


def test_files_without_config_still_load_as_generators(tmp_path):
    """Run folders written before the contract hold generator weights only: the shapes give the config."""
    g = tiny_generator()
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(tmp_path / "generator_ema.safetensors"))
    loaded, latent_avg = load_generator(tmp_path)
    assert latent_avg is None and loaded.channels == g.channels
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in g.state_dict().items())


@pytest.mark.parametrize(("cls", "file"), [
    (Generator, "checkpoints/faces64/generator.safetensors"),
    (Encoder, "checkpoints/faces64/encoder.safetensors"),
    (PixelEnsemble, "checkpoints/faces64/segmenter.safetensors"),
    (AttributeNet, "checkpoints/attribute_net_faces64.safetensors"),
])
def test_shipped_files_load_unchanged(cls, file):
    path = REPO / file
    model = cls.load(path)
    stored = load_file(path)
    state = model.state_dict()
    assert state.keys() == stored.keys() and all(torch.equal(state[k], v) for k, v in stored.items())
    assert not model.training and not any(p.requires_grad for p in model.parameters())
