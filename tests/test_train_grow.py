"""Growing a trained GAN to twice its size: what is copied, what starts neutral, and that the run resumes."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch

from editgan_core.gpu_run import train as gpu_train
from editgan_core.models.encoder import Encoder
from editgan_core.models.serialization import CheckpointError
from editgan_core.models.stylegan2 import DEFAULT_BLUR, Discriminator, Generator, Upsample
from editgan_core.train import gan, grow, shards
from editgan_core.vectors.fileformat import load_vector, save_vector
from editgan_core.vectors.vector import EditVector


def preset_kwargs(name: str) -> dict:
    return {k: v for k, v in gan.PRESETS[name].items() if k != "encoder_size"}


def tiny_pair(seed: int = 0) -> tuple[Generator, Generator]:
    torch.manual_seed(seed)
    return Generator(**preset_kwargs("tiny32")), Generator(**preset_kwargs("tiny64"))


def test_a_grown_generator_draws_the_small_image_upsampled():
    small, large = tiny_pair()
    copied = grow.grow_generator(large, small.state_dict())
    assert set(copied) == set(small.state_dict())
    large_state = large.state_dict()
    assert all(torch.equal(large_state[k], v) for k, v in small.state_dict().items())
    z = torch.randn(3, small.style_dim)
    with torch.no_grad():
        image, _ = small([z], randomize_noise=False)
        grown, _ = large([z], randomize_noise=False)
    expected = Upsample(DEFAULT_BLUR)(image)
    assert grown.shape == (3, 3, 64, 64)
    assert (grown - expected).abs().max() < 0.05 * image.abs().max()
    assert not torch.equal(grown, expected)  # the new ToRGB is quiet, not dead


def test_without_the_quiet_new_torgb_the_grown_image_differs():
    small, large = tiny_pair()
    large.load_state_dict(small.state_dict(), strict=False)  # the same copy, new ToRGB at its full init
    z = torch.randn(3, small.style_dim)
    with torch.no_grad():
        image, _ = small([z], randomize_noise=False)
        grown, _ = large([z], randomize_noise=False)
    assert (grown - Upsample(DEFAULT_BLUR)(image)).abs().max() > 0.05 * image.abs().max()


def test_gradients_reach_the_new_convs_from_the_first_step():
    small, large = tiny_pair()
    grow.grow_generator(large, small.state_dict())
    image, _ = large([torch.randn(2, large.style_dim)])
    image.square().mean().backward()
    assert large.convs[-1].conv.weight.grad.abs().sum() > 0
    assert large.convs[-2].conv.weight.grad.abs().sum() > 0


def test_a_grown_discriminator_takes_the_old_blocks_one_level_down():
    torch.manual_seed(0)
    small = Discriminator(32, channels=gan.PRESETS["tiny32"]["channels"])
    large = Discriminator(64, channels=gan.PRESETS["tiny64"]["channels"])
    fresh = {k: v.clone() for k, v in large.state_dict().items()}
    copied = grow.grow_discriminator(large, small.state_dict(), steps=1)
    after = large.state_dict()
    assert not any(name.startswith(("convs.0.", "convs.1.")) for name in copied)  # new from-RGB and 64->32 block
    assert all(torch.equal(after[k], fresh[k]) for k in after if k.startswith(("convs.0.", "convs.1.")))
    assert {k for k in small.state_dict() if not k.startswith("convs.0.")} == \
        {k if not k.startswith("convs.") else f"convs.{int(k.split('.')[1]) - 1}.{k.split('.', 2)[2]}" for k in copied}
    assert any(k.startswith("final_linear.") for k in copied)
    features = torch.randn(4, 16, 32, 32)  # what the old from-RGB layer fed the 32-px block
    with torch.no_grad():
        assert torch.equal(large.convs[2:](features), small.convs[1:](features))


def test_growing_refuses_widths_that_do_not_carry_over():
    small = Generator(**preset_kwargs("tiny32"))
    other = Generator(64, 32, 2, channels={4: 32, 8: 32, 16: 32, 32: 16, 64: 8})
    with pytest.raises(CheckpointError, match="convs"):
        grow.grow_generator(other, small.state_dict())
    with pytest.raises(CheckpointError, match="power of two"):
        grow.growth_steps(64, 96)


@pytest.mark.parametrize(("n_small", "n_large"), [(10, 12), (8, 10)])
def test_a_grown_encoder_predicts_the_old_styles_and_extends_them(n_small, n_large):
    torch.manual_seed(0)
    encoder = Encoder(32, n_small, 16, channels={32: 8, 16: 8, 8: 8, 4: 8}, head_width=8)
    with torch.no_grad():
        for head in encoder.heads:
            head.linear.weight.normal_()  # a trained encoder: heads away from their zero start
        encoder.w_avg.normal_()
    grown = grow.grow_encoder(encoder, n_large)
    images = torch.rand(2, 3, 64, 64) * 2 - 1  # the grown generator's size: resized on the way in
    with torch.no_grad():
        old, new = encoder(images), grown(images)
    assert new.shape == (2, n_large, 16)
    torch.testing.assert_close(new[:, :n_small], old)
    extra = new[:, n_small:]
    if len(grown.heads) == len(encoder.heads):  # the last head grew: its finest style, repeated
        torch.testing.assert_close(extra, old[:, -1:].expand_as(extra))
    else:  # a new pyramid level: it starts at the average latent
        torch.testing.assert_close(extra, encoder.w_avg.expand_as(extra))


def run(out, kimg, *extra):
    gan.main(["--domain", "faces", "--out", str(out), "--batch", "4", "--kimg", str(kimg), "--ckpt-every", "1",
              "--sample-every", "8", "--threads", "1", "--recon", "10", *extra])


def test_train_gan_grows_a_run_and_its_shards_resume_with_the_grown_preset(tmp_path):
    small = tmp_path / "small"
    run(small, 0.008, "--size", "32", "--preset", "tiny32", "--encoder", "new")
    grown = tmp_path / "grown"
    run(grown, 0.004, "--size", "64", "--preset", "tiny64", "--init", str(small), "--encoder", str(small),
        "--recon-size", "32")
    state = torch.load(grown / "checkpoint.pt", weights_only=True)
    assert state["step"] == 1 and state["images_seen"] == 4  # counted from the growth
    assert state["encoder"]["heads.2.linear.weight"].shape[0] == 2 * 32  # W+ 8 -> 10 styles: a third head
    assert Generator.load(grown / "generator_ema.safetensors").size == 64
    assert (grown / "samples" / "000000kimg.png").is_file()  # the grown model's first picture
    shards.write_gan_shards(state, tmp_path / "shards")
    args = shards.assemble(tmp_path / "shards", tmp_path / "resumed")
    assert args[args.index("--preset") + 1] == "tiny64" and args[args.index("--recon-size") + 1] == "32"
    gan.main([*args, "--kimg", "0.008", "--threads", "1"])  # a fresh 32-px encoder takes the grown one's weights
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 2
    resume = argparse.Namespace(resume=tmp_path / "shards", dry_run=False, train_args=[])
    cfg = gpu_train.config(resume, tmp_path / "gpu")
    assert (cfg.preset, cfg.size, cfg.channels, cfg.encoder_size, cfg.recon_size) == \
        ("tiny64", 64, gan.PRESETS["tiny64"]["channels"], 32, 32)
    machine = gan.parse_args([*gpu_train.TRAIN_ARGS, "--out", "x"])
    assert (cfg.workers, cfg.amp, cfg.batch) == (machine.workers, machine.amp, 4)  # the GPU's loader, the run's batch


def test_freeze_grown_trains_only_the_new_layers_and_survives_shards(tmp_path):
    small = tmp_path / "small"
    run(small, 0.004, "--size", "32", "--preset", "tiny32", "--encoder", "new")
    small_g = Generator.load(small / "generator_ema.safetensors").state_dict()
    grown = tmp_path / "grown"
    grow_args = ["--size", "64", "--preset", "tiny64", "--init", str(small), "--encoder", str(small)]
    run(grown, 0.008, *grow_args, "--freeze-grown", "inf")
    state = torch.load(grown / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and set(state["copied"]) == set(small_g) - {"latent_avg"}
    held = [k for k in state["copied"] if k in dict(Generator(**preset_kwargs("tiny64")).named_parameters())]
    assert held and all(torch.equal(state["g"][k], small_g[k]) for k in held)  # not one step moved them
    new = [k for k in state["g"] if k.startswith("convs.") and k not in state["copied"] and k.endswith("weight")]
    fresh = Generator(**preset_kwargs("tiny64"))
    grow.grow_generator(fresh, small_g)
    assert any(not torch.equal(state["g"][k], fresh.state_dict()[k]) for k in new)  # the new layers learned
    shards.write_gan_shards(state, tmp_path / "shards")
    args = shards.assemble(tmp_path / "shards", tmp_path / "resumed")
    assert args[args.index("--freeze-grown") + 1] == "inf"
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["copied"] == state["copied"]
    run(grown, 0.012, *grow_args, "--freeze-grown", "0.008")  # past its kimg, the copied layers learn again
    later = torch.load(grown / "checkpoint.pt", weights_only=True)
    assert later["step"] == 3 and any(not torch.equal(later["g"][k], small_g[k]) for k in held)


def test_recon_size_compares_the_reconstruction_at_the_encoders_resolution():
    cfg = gan.parse_args(["--size", "64", "--preset", "tiny64", "--out", "unused", "--recon", "1", "--encoder", "new"])
    trainer = gan.Trainer.__new__(gan.Trainer)  # only recon_loss's arithmetic: a stand-in encoder and generator
    trainer.cfg, trainer.e_ddp = cfg, lambda real: real
    detail = torch.full((2, 3, 64, 64), -0.5)
    detail[..., ::2, :] = 0.5  # zero-mean 1-px stripes: gone at 32 px
    trainer.generator = argparse.Namespace(stored_noise=lambda: None)
    trainer.g_ddp = lambda styles, **kwargs: (styles[0] + detail, None)
    trainer.d_ddp = None
    cfg.recon_adv = 0.0
    real = torch.rand(2, 3, 64, 64)
    full, _ = trainer.recon_loss(real)
    cfg.recon_size = 32
    small, _ = trainer.recon_loss(real)
    assert full.item() == pytest.approx(0.25)
    assert small.item() < 1e-3


def test_vectors_carry_over_only_to_a_generator_grown_with_its_layers_held(tmp_path):
    small, large = tiny_pair()
    grow.grow_generator(large, small.state_dict())
    (tmp_path / "small").mkdir()
    delta = torch.randn(small.n_latent, small.style_dim) * 0.1
    save_vector(EditVector(delta=delta, name="smile", bundle_id="tiny32", class_ids=[3], default_scale=1.25,
                           source="preset"), tmp_path / "small" / "smile.safetensors")
    (written,) = grow.carry_vectors(small, tmp_path / "small", "tiny32", large, tmp_path / "large", "tiny64")
    carried = load_vector(written, expect_bundle_id="tiny64", expect_shape=(large.n_latent, large.style_dim))
    torch.testing.assert_close(carried.delta[: small.n_latent], delta)
    assert not carried.delta[small.n_latent:].any()
    assert (carried.default_scale, carried.class_ids, carried.extra["carried_from"]) == (1.25, [3], "tiny32")
    first = written.stat()
    grow.carry_vectors(small, tmp_path / "small", "tiny32", large, tmp_path / "large", "tiny64")
    again = written.stat()  # carrying again leaves the file alone (a rewrite would be a new file)
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert load_vector(written, expect_bundle_id="tiny64").created == load_vector(
        tmp_path / "small" / "smile.safetensors", expect_bundle_id="tiny32").created
    w = small.style(torch.randn(2, small.style_dim))
    with torch.no_grad():  # the same edit: the grown image is still the small one's, upsampled
        edited_small, _ = small([carried.delta[: small.n_latent] + small.w_to_wplus(w)], input_is_latent=True,
                                randomize_noise=False)
        edited_large, _ = large([carried.delta + large.w_to_wplus(w)], input_is_latent=True, randomize_noise=False)
    assert (edited_large - Upsample(DEFAULT_BLUR)(edited_small)).abs().max() < 0.05 * edited_small.abs().max()
    with torch.no_grad():
        large.convs[0].conv.weight.add_(0.01)  # a copied layer that trained on
    with pytest.raises(CheckpointError, match=r"convs\.0\.conv\.weight"):
        grow.carry_vectors(small, tmp_path / "small", "tiny32", large, tmp_path / "other", "tiny64")


def test_grow_command_carries_a_bundles_vectors_to_its_grown_copy(tiny_bundle, other_tiny_bundle, tmp_path,
                                                                  capsys):
    from editgan_core.bundle import Bundle

    grown = Path(shutil.copytree(tiny_bundle, tmp_path / "grown"))  # held layers: the same tensors as the small one
    manifest = json.loads((grown / "manifest.json").read_text())
    (grown / "manifest.json").write_text(json.dumps({**manifest, "id": "tiny-grown"}))
    for old in (grown / "vectors").glob("*.safetensors"):
        old.unlink()
    assert grow.main(["--vectors-from", str(tiny_bundle), "--bundle", str(grown)]) == 0
    small = Bundle.load(tiny_bundle, hub=False)
    names = sorted(p.name for p in small.vectors_dir.glob("*.safetensors"))
    assert names and sorted(p.name for p in (grown / "vectors").glob("*.safetensors")) == names
    carried = load_vector(grown / "vectors" / names[0], expect_bundle_id="tiny-grown")
    torch.testing.assert_close(carried.delta, load_vector(small.vectors_dir / names[0]).delta)
    assert carried.extra["carried_from"] == small.id and f"{len(names)} vectors carried" in capsys.readouterr().out
    assert "carried over from" in (grown / "README.md").read_text()
    other = Path(shutil.copytree(other_tiny_bundle, tmp_path / "other"))  # other weights: not grown from it
    assert grow.main(["--vectors-from", str(tiny_bundle), "--bundle", str(other)]) == 2
    assert "learn new vectors" in capsys.readouterr().err
    assert grow.main(["--vectors-from", str(tmp_path / "nowhere"), "--bundle", str(grown)]) == 2
    small_copy = Path(shutil.copytree(tiny_bundle, tmp_path / "small"))
    (small_copy / "vectors" / "zz_broken.safetensors").write_bytes(b"not a vector")  # read last
    before = {p.name: p.read_bytes() for p in (grown / "vectors").glob("*.safetensors")}
    assert grow.main(["--vectors-from", str(small_copy), "--bundle", str(grown)]) == 2
    assert {p.name: p.read_bytes() for p in (grown / "vectors").glob("*.safetensors")} == before  # nothing written
