"""Issue #24: ``pairs_distil``, a shared vector whose renders match each training pair's embedded true target."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from editgan_core.train.true_targets import distil_delta, part_balanced_weights


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


def test_pixel_weights_decide_which_pixels_the_fit_answers_to():
    pipe = _pipeline()
    originals = torch.randn(4, 1, 12, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():  # targets whose pictures differ from the faces' in one pixel of one channel only
        pictures = pipe.generator.synthesis(originals).image
        pictures[:, 0, 0, 0] += 1.0
        targets = torch.linalg.solve(pipe.generator.map.weight, pictures.reshape(4, 12).T).T.reshape(4, 1, 12)
    blind = torch.ones(4, 1, 2, 2)
    blind[:, :, 0, 0] = 0.0
    def change(delta):  # what δ does to the picture (the map is linear)
        with torch.no_grad():
            return pipe.generator.synthesis(delta[None]).image[0]

    blind_fit, _ = distil_delta(pipe, originals, targets, torch.zeros(1, 12), 300, lr=0.05, pixel_weights=blind)
    seen_fit, _ = distil_delta(pipe, originals, targets, torch.zeros(1, 12), 300, lr=0.05)
    assert change(seen_fit)[0, 0, 0] == pytest.approx(1.0, abs=0.02)
    assert abs(change(blind_fit)[0, 0, 0]) < 0.2  # the only pixel asking for a change carries no weight
    for fit in (blind_fit, seen_fit):
        others = change(fit).clone()
        others[:, 0, 0] = 0.0  # the blind pixel, every channel
        assert others.abs().max() < 0.02


def test_distillation_refuses_impossible_settings():
    pipe = _pipeline()
    latents = torch.zeros(2, 1, 12)
    for kwargs in ({"steps": -1}, {"steps": 1, "batch": 0}, {"steps": 1, "lr": 0.0}):
        with pytest.raises(ValueError, match="distillation needs"):
            distil_delta(pipe, latents, latents, torch.zeros(1, 12), **kwargs)


def test_part_balanced_weights_count_every_part_alike():
    from editgan_core.domains import faces

    seeds = [3, 4]
    weights = part_balanced_weights(faces, "smile", 1.0, seeds, 32, cap=1000.0)
    assert weights.shape == (2, 1, 32, 32) and torch.allclose(weights.mean((1, 2, 3)), torch.ones(2))
    labels = faces.render(faces.sample_attributes(3), 32).labels
    background = weights[0, 0][torch.from_numpy(labels == 0)].mean()
    pupils = weights[0, 0][torch.from_numpy(labels == faces.CLASSES.index(
        next(c for c in faces.CLASSES if c.name == "pupils")))].mean()
    assert pupils > 10 * background  # a pupil is a few pixels, the background hundreds
    capped = part_balanced_weights(faces, "smile", 1.0, seeds, 32, cap=2.0)
    assert torch.allclose(capped.mean((1, 2, 3)), torch.ones(2)) and capped.max() < weights.max() / 10


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


def test_presets_command_refuses_negative_steps(capsys):
    from editgan_core.train import presets

    with pytest.raises(SystemExit):
        presets.main(["--bundle", "no/such/bundle", "--steps", "-2"])
    assert "--steps" in capsys.readouterr().err
