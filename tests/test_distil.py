"""Issue #24: ``pairs_distil``, a shared vector whose renders match each training pair's embedded true target."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from editgan_core.train.true_targets import distil_delta


class LinearGenerator(nn.Module):
    """The picture is a fixed invertible linear map of the latent: (B, 1, 12) -> (B, 3, 2, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.map = nn.Linear(12, 12, bias=False)
        with torch.no_grad():
            self.map.weight.copy_(torch.eye(12) + 0.1 * torch.randn(12, 12, generator=torch.Generator().manual_seed(1)))

    def synthesis(self, latent, noise=None):
        return SimpleNamespace(image=self.map(latent).reshape(-1, 3, 2, 2))


def _pipeline() -> SimpleNamespace:
    return SimpleNamespace(device=torch.device("cpu"), generator=LinearGenerator(), noise=None)


def test_distillation_finds_the_shared_step_the_pictures_ask_for():
    pipe = _pipeline()
    originals = torch.randn(6, 1, 12, generator=torch.Generator().manual_seed(2))
    true_step = torch.randn(1, 12, generator=torch.Generator().manual_seed(3))
    start = torch.zeros(1, 12)
    delta, info = distil_delta(pipe, originals, originals + true_step, start, 400, lr=0.05, batch=4)
    assert torch.allclose(delta, true_step, atol=0.02)
    assert info["steps"] == 400 and info["batch"] == 4 and info["loss_end"] < 1e-3
    assert all(p.requires_grad for p in pipe.generator.parameters())  # the generator is left as it was
    again, _ = distil_delta(pipe, originals, originals + true_step, start, 400, lr=0.05, batch=4)
    assert torch.equal(delta, again)  # the same pairs and seed give the same vector
    unchanged, _ = distil_delta(pipe, originals, originals + true_step, start, 0)
    assert torch.equal(unchanged, start)


def test_distillation_refuses_impossible_settings():
    pipe = _pipeline()
    latents = torch.zeros(2, 1, 12)
    for kwargs in ({"steps": -1}, {"steps": 1, "batch": 0}, {"steps": 1, "lr": 0.0}):
        with pytest.raises(ValueError, match="distillation needs"):
            distil_delta(pipe, latents, latents, torch.zeros(1, 12), **kwargs)


def test_presets_command_distils_and_records_how(tiny_bundle, tmp_path):
    from editgan_core.train import presets
    from editgan_core.vectors import load_vector

    # a few embedding steps, so that each face and its true target get different latents on the random model
    common = ["--bundle", str(tiny_bundle), "--device", "cpu", "--only", "open_mouth", "--faces", "2",
              "--embed-steps", "3", "--cache", str(tmp_path / "cache")]
    assert presets.main([*common, "--method", "pairs", "--out", str(tmp_path / "mean")]) == 0
    assert presets.main([*common, "--method", "pairs_distil", "--steps", "3", "--out", str(tmp_path / "d")]) == 0
    assert presets.main([*common, "--method", "pairs_distil", "--steps", "0", "--out", str(tmp_path / "d0")]) == 0
    mean = load_vector(tmp_path / "mean" / "open_mouth.safetensors")
    distilled = load_vector(tmp_path / "d" / "open_mouth.safetensors")
    assert distilled.extra["method"] == "pairs_distil" and distilled.extra["steps"] == 3
    assert distilled.extra["seeds"] == mean.extra["seeds"] and not torch.equal(distilled.delta, mean.delta)
    assert torch.equal(load_vector(tmp_path / "d0" / "open_mouth.safetensors").delta, mean.delta)  # 0 steps: the mean


def test_each_preset_is_learned_with_its_own_method_unless_told(tiny_bundle, tmp_path):
    from editgan_core.train import presets
    from editgan_core.vectors import load_vector

    look_left = next(s for s in presets.PRESETS if s.name == "look_left")
    assert look_left.method == "pairs_distil"
    common = ["--bundle", str(tiny_bundle), "--device", "cpu", "--only", "look_left", "--faces", "2",
              "--embed-steps", "1", "--steps", "2", "--cache", str(tmp_path / "cache")]
    assert presets.main([*common, "--out", str(tmp_path / "own")]) == 0
    assert presets.main([*common, "--method", "pairs", "--out", str(tmp_path / "told")]) == 0
    own = load_vector(tmp_path / "own" / "look_left.safetensors").extra
    told = load_vector(tmp_path / "told" / "look_left.safetensors").extra
    assert own["method"] == "pairs_distil" and own["steps"] == 2
    assert told["method"] == "pairs" and "steps" not in told


def test_presets_command_refuses_negative_steps(capsys):
    from editgan_core.train import presets

    with pytest.raises(SystemExit):
        presets.main(["--bundle", "no/such/bundle", "--steps", "-2"])
    assert "--steps" in capsys.readouterr().err
