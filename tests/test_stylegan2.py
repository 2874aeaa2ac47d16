"""The generator reproduces rosinality's reference outputs and real config-f layouts."""

from __future__ import annotations

import json

import pytest
import torch

from editgan_core.models.checkpoint import load_rosinality_generator, read_torch_file
from editgan_core.models.serialization import CheckpointError
from editgan_core.models.stylegan2 import Discriminator, Generator, ModulatedConv2d

TOL = 1e-4


@pytest.fixture(scope="module")
def reference(shared_fixtures):
    expected = torch.load(shared_fixtures / "rosinality_g64_expected.pt", weights_only=True)
    cfg = expected["config"]
    g = Generator(cfg["size"], cfg["style_dim"], cfg["n_mlp"], channels=cfg["channels"],
                  lr_mlp=cfg["lr_mlp"], blur_kernel=cfg["blur_kernel"])
    ckpt = torch.load(shared_fixtures / "rosinality_g64.pt", weights_only=True)
    g.load_state_dict(ckpt["g_ema"], strict=True)
    return g.eval(), expected


def set_fused(g: Generator, fused: bool | None) -> None:
    for m in g.modules():
        if isinstance(m, ModulatedConv2d):
            m.fused = fused


@pytest.mark.parametrize("fused", [True, False])
def test_matches_reference_outputs(reference, fused):
    g, exp = reference
    set_fused(g, fused)
    with torch.no_grad():
        assert (g.get_latent(exp["z"]) - exp["w_from_z"]).abs().max() <= TOL
        img, _ = g([exp["z"]], randomize_noise=False)
        assert (img - exp["image_from_z"]).abs().max() <= TOL
        img, _ = g([exp["z"]], randomize_noise=False, truncation=exp["truncation"],
                   truncation_latent=exp["truncation_latent"])
        assert (img - exp["image_truncated"]).abs().max() <= TOL
        img, latent = g([exp["wplus"]], input_is_latent=True, randomize_noise=False, return_latents=True)
        assert (img - exp["image_from_wplus"]).abs().max() <= TOL
        assert latent.shape == (2, exp["n_latent"], 64)
    set_fused(g, None)


def test_checkpoint_loader_infers_architecture(shared_fixtures, reference):
    _, exp = reference
    loaded, latent_avg = load_rosinality_generator(shared_fixtures / "rosinality_g64.pt")
    assert loaded.n_latent == exp["n_latent"] and loaded.size == 64
    assert latent_avg is not None and latent_avg.shape == (1, 64)
    with torch.no_grad():
        img, _ = loaded([exp["wplus"]], input_is_latent=True, randomize_noise=False)
    assert (img - exp["image_from_wplus"]).abs().max() <= TOL


def test_features_in_documented_order(reference):
    g, exp = reference
    with torch.no_grad():
        _, _, feats = g([exp["wplus"]], input_is_latent=True, randomize_noise=False, return_features=True)
    assert [f.shape[1] for f in feats] == g.feature_channels()
    assert [f.shape[-1] for f in feats] == [4, 4, 8, 8, 16, 16, 32, 32, 64, 64]
    assert torch.equal(feats[0][0], g.input.input[0])


def test_style_mixing_and_w_to_wplus(reference):
    g, exp = reference
    w = g.get_latent(exp["z"][:2])
    wp = g.w_to_wplus(w)
    assert wp.shape == (2, g.n_latent, g.style_dim)
    with torch.no_grad():
        a, _ = g([w], input_is_latent=True, randomize_noise=False)
        b, _ = g([wp], input_is_latent=True, randomize_noise=False)
        _, latent = g([w, w.flip(0)], input_is_latent=True, inject_index=3, randomize_noise=False,
                          return_latents=True)
    assert torch.allclose(a, b)
    assert torch.equal(latent[:, :3], wp[:, :3]) and torch.equal(latent[:, 3:], wp.flip(0)[:, 3:])
    assert g.mean_latent(64).shape == (1, g.style_dim)


@pytest.mark.parametrize("name", ["ffhq_1024_config_f", "car_512_config_f", "cat_256_config_f"])
def test_config_f_keys_and_shapes(shared_fixtures, name):
    spec = json.loads((shared_fixtures / "rosinality_config_f_shapes.json").read_text())[name]
    with torch.device("meta"):
        g = Generator(spec["size"], spec["style_dim"], spec["n_mlp"], channel_multiplier=spec["channel_multiplier"])
    shapes = {k: list(v.shape) for k, v in g.state_dict().items()}
    assert shapes == spec["state_dict_shapes"]
    assert g.n_latent == spec["n_latent"]
    if spec["size"] == 512:
        assert sum(g.feature_channels()) == 6016


def test_discriminator_runs_and_backprops():
    d = Discriminator(32, channels={4: 16, 8: 16, 16: 8, 32: 8})
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    out = d(x)
    assert out.shape == (4, 1)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    grad.square().sum().backward()  # R1 needs double backward
    assert d.convs[0][0].weight.grad is not None


def test_bad_checkpoints_are_refused_clearly(tmp_path, shared_fixtures):
    ckpt = torch.load(shared_fixtures / "rosinality_g64.pt", weights_only=True)
    sd = dict(ckpt["g_ema"])
    sd["conv1.conv.weight"] = torch.zeros(1, 64, 32, 3, 3)
    del sd["to_rgb1.bias"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_rosinality_generator({"g_ema": sd})
    msg = str(info.value)
    assert "to_rgb1.bias" in msg and "extra.weight" in msg
    assert "conv1.conv.weight: expected (1, 64, 64, 3, 3), found (1, 64, 32, 3, 3)" in msg

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": Evil()}, path)
    with pytest.raises(CheckpointError, match="code execution"):
        read_torch_file(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        read_torch_file(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not found"):
        read_torch_file(tmp_path / "missing.pt")
