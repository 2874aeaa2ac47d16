"""Attribute net: shapes, units, resizing, save/load; the training CLI runs end to end on tiny settings."""

from __future__ import annotations

import json

import pytest
import torch

from editgan_core.models.attribute_net import AttributeNet
from editgan_core.models.serialization import read_metadata
from editgan_core.train import attributes as train_attributes

TARGETS = {"smile": (-1.0, 1.0), "mouth_open": (0.0, 1.0), "tone": (0.0, 1.0)}


def tiny_net(**kwargs) -> AttributeNet:
    torch.manual_seed(0)
    return AttributeNet(TARGETS, attributes=["smile", "mouth_open"], input_size=32, channels=(4, 8), hidden=16,
                        **kwargs).eval()


def test_shapes_and_units():
    net = tiny_net()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert net.features(x).shape == (3, 16)
    assert net.normalised(x).shape == (3, 3)
    out = net(x)
    assert out.shape == (3, 2)
    # forward = normalised values mapped back to each range; smile spans [-1, 1]
    norm = net.normalised(x)
    torch.testing.assert_close(out[:, 0], norm[:, 0] * 2 - 1)
    torch.testing.assert_close(out[:, 1], norm[:, 1])
    assert set(net.predict(x)) == set(TARGETS)


def test_any_input_size_is_resized_antialiased():
    net = tiny_net()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    small = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(net(x), net(small))
    assert net(torch.rand(2, 3, 48, 48)).shape == (2, 2)


def test_save_load_round_trip(tmp_path):
    net = tiny_net()
    path = net.save(tmp_path / "net.safetensors", metadata={"note": "hi"})
    loaded = AttributeNet.load(path)
    assert loaded.config == net.config and loaded.attribute_names == ["smile", "mouth_open"]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(x), net(x))
    meta = read_metadata(path)
    assert meta["note"] == "hi" and json.loads(meta["config"])["channels"] == [4, 8]


def test_rejects_bad_sizes_and_names():
    with pytest.raises(ValueError):
        AttributeNet(TARGETS, input_size=36, channels=(4, 8, 16))
    with pytest.raises(KeyError):
        AttributeNet(TARGETS, attributes=["frown"])


def test_training_cli_two_steps(tmp_path, capsys):
    out = tmp_path / "net.safetensors"
    train_attributes.main(["--out", str(out), "--size", "32", "--steps", "2", "--batch", "4", "--pool", "6",
                           "--refresh", "2", "--val", "4", "--channels", "4,8", "--hidden", "16",
                           "--threads", str(torch.get_num_threads())])
    net = AttributeNet.load(out)
    assert net.attribute_names[:2] == ["smile", "mouth_open"] and len(net.attribute_names) == 11
    assert "bg_hue_cos" in net.targets
    assert "validation MAE" in capsys.readouterr().out
    assert "val_mae" in read_metadata(out)
