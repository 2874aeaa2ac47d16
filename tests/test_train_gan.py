"""The GAN trainer runs, checkpoints atomically, exports the EMA generator and resumes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from editgan_core.bundle import generator_kwargs
from editgan_core.models.stylegan2 import Generator
from editgan_core.train import gan


def run(out, kimg, *extra):
    gan.main(["--domain", "faces", "--size", "32", "--preset", "tiny32", "--out", str(out), "--batch", "4",
              "--kimg", str(kimg), "--ckpt-every", "1", "--sample-every", "8", "--threads", "1", *extra])


def test_trains_exports_and_resumes(tmp_path):
    out = tmp_path / "run"
    run(out, 0.008)  # 2 steps of 4 images
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and state["images_seen"] == 8
    config = json.loads((out / "generator_config.json").read_text())
    g = Generator(**generator_kwargs(config))
    g.load_state_dict(load_file(out / "generator_ema.safetensors"))  # strict: the export is complete
    assert sorted(p.name for p in (out / "samples").glob("*.png"))
    first = load_file(out / "generator_ema.safetensors")
    run(out, 0.016, "--r1", "0.1")  # resumes for 2 more steps, R1 (step 0 mod 16 was step 0) already ran
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and state["images_seen"] == 16
    assert any(not torch.equal(first[k], v) for k, v in load_file(out / "generator_ema.safetensors").items())


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


def test_part_discriminators_train_and_resume(tmp_path):
    out = tmp_path / "parts"
    run(out, 0.008, "--part", "mouth", "--part", "brow=0.3,0.2,0.2,0.6", "--r1", "0.1")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {key.split(".")[0] for key in state["parts"]["ds"]} == {"mouth", "brow"}
    before = {k: v.clone() for k, v in state["parts"]["ds"].items()}
    run(out, 0.016, "--part", "mouth", "--part", "brow=0.3,0.2,0.2,0.6")
    after = torch.load(out / "checkpoint.pt", weights_only=True)["parts"]["ds"]
    assert after.keys() == before.keys() and any(not torch.equal(before[k], after[k]) for k in after)


def test_crop_part_takes_the_window():
    images = torch.arange(64.0).view(1, 1, 8, 8).expand(2, 3, 8, 8)
    crop = gan.crop_part(images, (0.25, 0.5, 0.5, 0.25), size=2)  # rows 2..5 halved, columns 4..5
    assert crop.shape == (2, 3, 2, 2)
    assert torch.allclose(crop[0, 0], torch.tensor([[24.0, 25.0], [40.0, 41.0]]))


@pytest.mark.parametrize("part", ["nose", "mouth=0.5,0.5,0.6,0.1", "mouth=a,b,c,d", "mouth=0.1,0.1"])
def test_rejects_bad_part_boxes(tmp_path, part):
    with pytest.raises(SystemExit):
        gan.parse_args(["--size", "32", "--preset", "tiny32", "--out", str(tmp_path), "--part", part])
