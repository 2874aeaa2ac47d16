"""The image -> W+ encoder: shapes, the average-face start, files, and that its training learns."""

from __future__ import annotations

import pytest
import torch

from editgan_core.models.encoder import Encoder, latent_groups
from editgan_core.models.stylegan2 import Generator
from editgan_core.train import encoder as train_encoder
from editgan_core.train.encoder import LossWeights, encoder_loss, load_generator, sample_wplus

TINY_CHANNELS = {4: 16, 8: 16, 16: 8, 32: 8}


@pytest.fixture(scope="module")
def tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(32, 32, 2, channels=TINY_CHANNELS).eval().requires_grad_(False)


@pytest.fixture
def generator_dir(tmp_path, tiny_generator):
    """A run folder like the GAN trainer writes: the EMA generator, its config in the file's metadata."""
    tiny_generator.save(tmp_path / "generator_ema.safetensors")
    return tmp_path


def tiny_encoder(g: Generator) -> Encoder:
    torch.manual_seed(1)
    return Encoder(g.size, g.n_latent, g.style_dim, channels={32: 8, 16: 16, 8: 16, 4: 16})


def test_output_shape_and_latent_groups(tiny_generator):
    enc = tiny_encoder(tiny_generator)
    assert enc(torch.randn(3, 3, 32, 32)).shape == (3, 8, 32)
    assert enc(torch.randn(2, 3, 64, 64)).shape == (2, 8, 32)  # other sizes are resized on the way in
    assert latent_groups(10) == [(0, 4), (4, 8), (8, 10)]
    assert latent_groups(18) == [(0, 4), (4, 8), (8, 18)]
    assert latent_groups(6) == [(0, 4), (4, 6)]


def test_demo_size_is_compact():
    enc = Encoder(64, 10, 128)
    assert 1_000_000 <= sum(p.numel() for p in enc.parameters()) <= 2_000_000


def test_untrained_encoder_outputs_the_average_latent(tiny_generator):
    w_avg = torch.randn(1, 32)
    enc = tiny_encoder(tiny_generator).set_w_avg(w_avg)
    out = enc(torch.randn(4, 3, 32, 32))
    torch.testing.assert_close(out, w_avg.view(1, 1, 32).expand(4, 8, 32), rtol=0, atol=0)


def test_save_load_round_trip(tmp_path, tiny_generator):
    enc = tiny_encoder(tiny_generator).set_w_avg(torch.randn(32))
    for p in enc.parameters():  # make the zero-initialised heads non-trivial
        p.data.normal_()
    path = enc.save(tmp_path / "enc.safetensors", metadata={"note": "test"})
    loaded = Encoder.load(path)
    assert loaded.config == enc.config
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), enc.eval()(x))


def test_load_generator_from_run_folder_and_file(generator_dir, tiny_generator):
    x = torch.randn(1, 8, 32)
    for source in (generator_dir, generator_dir / "generator_ema.safetensors"):
        g, latent_avg = load_generator(source)
        assert latent_avg is None and not any(p.requires_grad for p in g.parameters())
        torch.testing.assert_close(g.synthesis(x, noise=g.stored_noise()).image,
                                   tiny_generator.synthesis(x, noise=tiny_generator.stored_noise()).image)


def test_sampled_targets_mix_styles(tiny_generator):
    w_avg = torch.zeros(32)
    wplus = sample_wplus(tiny_generator, 16, w_avg, mixing=1.0, rng=torch.Generator().manual_seed(0))
    assert wplus.shape == (16, 8, 32)
    assert all(not torch.equal(w[0], w[-1]) for w in wplus)  # every sample switches style somewhere
    same = sample_wplus(tiny_generator, 16, w_avg, mixing=0.0, rng=torch.Generator().manual_seed(0))
    assert torch.equal(same, same[:, :1].expand_as(same))


def test_training_steps_reduce_latent_loss(tiny_generator):
    g = tiny_generator
    enc = tiny_encoder(g).set_w_avg(g.mean_latent(500))
    targets = sample_wplus(g, 8, enc.w_avg, rng=torch.Generator().manual_seed(3))
    with torch.no_grad():
        images = g.synthesis(targets, noise=g.stored_noise()).image
    optim = torch.optim.Adam(enc.parameters(), lr=1e-2)
    weights = LossWeights(latent=1.0, rec=1.0)
    history = []
    for _ in range(10):
        loss, logs = encoder_loss(enc, g, images, targets, weights)
        optim.zero_grad()
        loss.backward()
        optim.step()
        history.append(logs["lat"])
    assert history[-1] < 0.85 * history[0]
    assert all(p.grad is None for p in g.parameters())  # frozen generator, gradients only reach the encoder


def test_cli_runs_two_steps_and_resumes(tmp_path, generator_dir):
    out = tmp_path / "enc"
    args = ["--generator", str(generator_dir), "--out", str(out), "--real-domain", "faces", "--batch", "2",
            "--eval-count", "2", "--ckpt-every", "1", "--no-lpips", "--threads", "1"]
    result = train_encoder.main([*args, "--steps", "2"])
    assert {"latent_mse", "psnr_synth", "psnr_real"} <= set(result)
    assert (out / "checkpoint.pt").is_file() and list((out / "samples").glob("*.png"))
    enc = Encoder.load(out / "encoder.safetensors")
    assert enc(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 32)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and state["real_seen"] == 2
    result = train_encoder.main([*args, "--steps", "3"])  # resumes for one more step
    assert result["step"] == 3
