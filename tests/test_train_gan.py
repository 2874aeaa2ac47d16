"""The GAN trainer runs, checkpoints atomically, exports the EMA generator and resumes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from editgan_core.models.encoder import Encoder
from editgan_core.models.stylegan2 import Discriminator, Generator
from editgan_core.train import gan
from editgan_core.train.data import TRAIN_SEED_BASE, DomainStream


def run(out, kimg, *extra):
    gan.main(["--domain", "faces", "--size", "32", "--preset", "tiny32", "--out", str(out), "--batch", "4",
              "--kimg", str(kimg), "--ckpt-every", "1", "--sample-every", "8", "--threads", "1", *extra])


def test_trains_exports_and_resumes(tmp_path):
    out = tmp_path / "run"
    run(out, 0.008)  # 2 steps of 4 images
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and state["images_seen"] == 8
    g = Generator.load(out / "generator_ema.safetensors")  # checked: the export is complete and carries its config
    assert g.config == Generator(**gan.PRESETS["tiny32"]).config
    assert Discriminator.load(out / "discriminator.safetensors").channels[32] == 16
    assert sorted(p.name for p in (out / "samples").glob("*.png"))
    first = load_file(out / "generator_ema.safetensors")
    run(out, 0.016, "--r1", "0.1")  # resumes for 2 more steps, R1 (step 0 mod 16 was step 0) already ran
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and state["images_seen"] == 16
    assert any(not torch.equal(first[k], v) for k, v in load_file(out / "generator_ema.safetensors").items())


def test_a_resume_trains_at_the_learning_rate_it_is_given(tmp_path):
    out = tmp_path / "run"
    run(out, 0.008)
    run(out, 0.016, "--lr", "0.0005")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    g_ratio, d_ratio = 4 / 5, 16 / 17  # the tiny preset's path_every 4 and r1_every 16, lazily regularised
    assert state["g_optim"]["param_groups"][0]["lr"] == pytest.approx(0.0005 * g_ratio)
    assert state["d_optim"]["param_groups"][0]["lr"] == pytest.approx(0.0005 * d_ratio)


def test_rejects_mismatched_preset(tmp_path):
    with pytest.raises(SystemExit):
        gan.main(["--size", "64", "--preset", "tiny32", "--out", str(tmp_path)])


def test_init_continues_from_an_exported_model(tmp_path):
    first = tmp_path / "first"
    run(first, 0.008)
    assert (first / "discriminator.safetensors").is_file()
    second = tmp_path / "second"
    run(second, 0.016, "--init", str(first))
    state = torch.load(second / "checkpoint.pt", weights_only=True)
    assert state["images_seen"] == 16 and state["step"] == 2  # 8 inherited images + 2 new steps of 4


def tiny_encoder(path, n_latent=8, style_dim=32):
    encoder = Encoder(32, n_latent, style_dim, channels={32: 8, 16: 8, 8: 8, 4: 8}, head_width=8)
    encoder.save(path)
    return encoder


def test_recon_trains_the_encoder_alongside_and_resumes_it(tmp_path):
    start = tiny_encoder(tmp_path / "encoder.safetensors")
    out = tmp_path / "run"
    run(out, 0.008, "--recon", "10", "--encoder", str(tmp_path))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and set(state["encoder"]) == set(start.state_dict())
    trained = Encoder.load(out / "encoder.safetensors")
    assert any(not torch.equal(v, trained.state_dict()[k]) for k, v in start.state_dict().items())
    run(out, 0.016, "--recon", "10", "--encoder", str(tmp_path))
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert resumed["step"] == 4 and resumed["e_optim"]["state"]


def test_recon_refuses_a_missing_or_mismatched_encoder(tmp_path):
    with pytest.raises(SystemExit):
        run(tmp_path / "a", 0.004, "--recon", "10")
    with pytest.raises(FileNotFoundError, match="no encoder"):
        run(tmp_path / "b", 0.004, "--recon", "10", "--encoder", str(tmp_path))
    tiny_encoder(tmp_path / "wrong.safetensors", n_latent=6)
    with pytest.raises(ValueError, match="W\\+ 6x32"):
        run(tmp_path / "c", 0.004, "--recon", "10", "--encoder", str(tmp_path / "wrong.safetensors"))


def test_extremes_push_editable_attributes_to_the_ends_of_their_ranges():
    from editgan_core.domains import faces

    plain, pushed = DomainStream("faces", 32, 4), DomainStream("faces", 32, 4, extremes=0.5)
    seeds = range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + 200)
    at_end = {name: 0 for name in faces.ATTRIBUTE_RANGES}
    for seed in seeds:
        before, after = plain.attributes(seed), pushed.attributes(seed)
        assert before == faces.sample_attributes(seed)
        assert {k for k in after if after[k] != before[k]} <= set(faces.ATTRIBUTE_RANGES)  # identity kept
        for name, ends in faces.ATTRIBUTE_RANGES.items():
            at_end[name] += after[name] in ends
    assert min(at_end.values()) >= 70, at_end  # about half of 200 (more where the range has a point mass at an end)
    assert 70 <= at_end["smile"] <= 130, at_end  # a continuous attribute: only the pushed half
    assert pushed.attributes(TRAIN_SEED_BASE) == pushed.attributes(TRAIN_SEED_BASE)  # the seed decides
    batch = next(iter(pushed))
    assert batch.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="probability"):
        DomainStream("faces", 32, 4, extremes=1.5)


def test_extremes_is_refused_for_image_folders(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gan.main(["--data", str(tmp_path), "--size", "32", "--preset", "tiny32", "--out", str(tmp_path / "run"),
                  "--extremes", "0.1"])
    assert "rendered --domain" in capsys.readouterr().err


def test_demo_bundle_needs_a_co_trained_encoder_for_encoder_from_run(tmp_path, capsys):
    from editgan_core.train import demo_bundle

    with pytest.raises(SystemExit):
        demo_bundle.main(["--run", str(tmp_path), "--out", str(tmp_path / "bundle"), "--encoder-from-run"])
    assert "no encoder.safetensors" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one encoder source, not both
        demo_bundle.main(["--run", str(tmp_path), "--out", str(tmp_path / "bundle"), "--encoder-from-run",
                          "--encoder-run", str(tmp_path / "enc")])
