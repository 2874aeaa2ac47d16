"""Latent files: one format written and read back, clear refusals, and the batch CLI reading its own outputs."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from PIL import Image

from editgan_core import latents
from editgan_core.cli import main as cli_main
from editgan_core.latents import EditRecord, LatentError, LatentFile, load_latent, save_latent
from editgan_core.vectors import EditVector, save_vector

SHAPE = (8, 32)


def write_raw(path, tensors, metadata):
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))
    return path


def meta(bundle="b", shape=SHAPE, **extra):
    return {"format": latents.FORMAT, "bundle_id": bundle, "latent_shape": json.dumps(list(shape)), **extra}


def test_round_trip_keeps_latent_original_edits_and_source(tmp_path):
    latent, original = torch.randn(1, *SHAPE), torch.randn(*SHAPE)
    edits = [EditRecord((("smile", 1.0), ("look_left", -0.5)), 30), EditRecord((("smile", 0.25),)),
             EditRecord((("open_mouth", 1.0),), 0, keep_parts=True)]
    item = LatentFile(latent=latent, bundle_id="b", original=original, edits=edits,
                      source={"image": "a.png", "embed_steps": 100, "psnr": 31.5})
    back = load_latent(save_latent(item, tmp_path / "a.latent.safetensors"), expect_bundle_id="b",
                       expect_shape=SHAPE)
    assert torch.equal(back.latent, latent) and torch.equal(back.original, original[None])
    assert back.edits == edits and back.source == item.source and back.latent_shape == SHAPE
    bare = load_latent(save_latent(LatentFile(latent=latent[0].double(), bundle_id="b"), tmp_path / "bare.safetensors"))
    assert bare.original is None and bare.edits == [] and bare.source == {} and bare.latent.dtype == torch.float32


def test_reads_what_the_studio_exported_before_the_core_owned_the_format(tmp_path):
    latent = torch.randn(*SHAPE)
    path = write_raw(tmp_path / "x-latent.safetensors", {"latent": latent}, meta("tiny-test"))
    assert torch.equal(load_latent(path, "tiny-test", SHAPE).latent[0], latent)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"definitely not safetensors"), "not a safetensors file"),
    (lambda p: write_raw(p, {"latent": torch.zeros(SHAPE)}, {"bundle": "b"}), "not an EditGAN latent"),
    (lambda p: save_vector(EditVector(delta=torch.zeros(SHAPE), name="v", bundle_id="b"), p),
     "not an EditGAN latent"),
    (lambda p: write_raw(p, {"latent": torch.zeros(SHAPE)}, meta(format="editgan-latent/9")),
     "this version reads 'editgan-latent/1'"),
    (lambda p: write_raw(p, {"w": torch.zeros(SHAPE)}, meta()), "no 'latent' tensor"),
    (lambda p: write_raw(p, {"latent": torch.zeros(SHAPE)}, {"format": latents.FORMAT, "bundle_id": "b"}),
     "no latent shape"),
    (lambda p: write_raw(p, {"latent": torch.zeros(SHAPE)}, meta(shape=(4, 32))), "says its latent is"),
    (lambda p: write_raw(p, {"latent": torch.full(SHAPE, float("nan"))}, meta()), "NaN or infinite"),
    (lambda p: write_raw(p, {"latent": torch.zeros(SHAPE, dtype=torch.int32)}, meta()), "float tensor"),
    (lambda p: write_raw(p, {"latent": torch.zeros(SHAPE), "original": torch.zeros(4, 32)}, meta()),
     "original latent is 4x32"),
    (lambda p: write_raw(p, {"latent": torch.zeros(SHAPE)}, meta(edits='[{"vectors": [["s", "x"]]}]')),
     "unreadable edit record"),
    (lambda p: write_raw(p, {"latent": torch.zeros(SHAPE)}, meta(source="[1]")), "not a JSON dict"),
    (lambda p: write_raw(p, {"latent": torch.zeros(SHAPE)}, meta(bundle="other")), "bundle 'other'"),
    (lambda p: write_raw(p, {"latent": torch.zeros(4, 32)}, meta(shape=(4, 32))), "holds a 4x32 latent"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: None, "does not exist"),
])
def test_refusals_name_the_file_and_the_reason(tmp_path, make, message):
    path = tmp_path / "in.safetensors"
    make(path)
    with pytest.raises(LatentError, match=message) as exc:
        load_latent(path, expect_bundle_id="b", expect_shape=SHAPE)
    assert "in.safetensors" in str(exc.value) and str(tmp_path) not in str(exc.value)


def test_size_is_capped_before_parsing(tmp_path, monkeypatch):
    path = save_latent(LatentFile(latent=torch.zeros(SHAPE), bundle_id="b"), tmp_path / "big.safetensors")
    monkeypatch.setattr(latents, "MAX_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(LatentError, match="larger than"):
        load_latent(path)


def test_writer_refuses_what_it_could_not_read_back(tmp_path):
    with pytest.raises(LatentError, match="NaN"):
        LatentFile(latent=torch.full(SHAPE, float("inf")), bundle_id="b")
    with pytest.raises(LatentError, match="bundle"):
        LatentFile(latent=torch.zeros(SHAPE), bundle_id="")
    with pytest.raises(LatentError, match="cannot be stored"):
        save_latent(LatentFile(latent=torch.zeros(SHAPE), bundle_id="b", source={"psnr": float("inf")}),
                    tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_batch_cli_writes_latent_files_and_edits_them_again(tmp_path, tiny_bundle, capsys):
    photos, first, second = tmp_path / "photos", tmp_path / "first", tmp_path / "second"
    photos.mkdir()
    Image.new("RGB", (40, 40), (200, 150, 100)).save(photos / "a.png")
    common = ["--bundle", str(tiny_bundle), "--device", "cpu", "--embed-steps", "2"]
    assert cli_main(["apply", str(photos), str(first), *common, "--vector", "smile=0.5"]) == 0
    once = load_latent(first / "a.latent.safetensors", "tiny-test")
    assert once.source["image"] == "a.png" and once.source["embed_steps"] == 2 and once.source["psnr"] > 0
    assert once.edits == [EditRecord((("smile", 0.5),))]

    # the first run's folder as input: its latent is read (a.png is its render), not embedded, and the edits
    # are chained; a new photo is embedded, a latent of another model and a name clash are reported
    Image.new("RGB", (40, 40)).save(first / "b.png")
    save_latent(LatentFile(latent=torch.zeros(1, *once.latent_shape), bundle_id="another-model"),
                first / "c.latent.safetensors")
    Image.new("RGB", (40, 40)).save(first / "d.png")
    Image.new("RGB", (40, 40)).save(first / "d.jpg")
    assert cli_main(["apply", str(first), str(second), *common, "--vector", "look_left", "--refine", "2"]) == 1
    err = capsys.readouterr().err  # the foreign latent failed and the clash was left out: exit status 1
    assert "d.jpg, d.png: all would be written as d.png" in err and "another-model" in err and "a.png" not in err
    twice = load_latent(second / "a.latent.safetensors", "tiny-test")
    assert torch.equal(twice.original, once.original) and twice.source == once.source
    assert twice.edits == [*once.edits, EditRecord((("look_left", 1.0),), 2)]
    assert not torch.equal(twice.latent, once.latent)
    assert sorted(p.name for p in second.glob("*.png")) == ["a.png", "b.png"]

    with pytest.raises(SystemExit):
        cli_main(["apply", str(first), str(first), *common, "--vector", "smile"])


def test_batch_cli_keeps_the_other_parts_on_request_and_resumes_runs_made_without(tmp_path, tiny_bundle, capsys):
    photos, plain, kept = tmp_path / "photos", tmp_path / "plain", tmp_path / "kept"
    photos.mkdir()
    Image.new("RGB", (40, 40), (200, 150, 100)).save(photos / "a.png")
    common = ["--bundle", str(tiny_bundle), "--device", "cpu", "--embed-steps", "2", "--vector", "smile=2"]
    assert cli_main(["apply", str(photos), str(plain), *common]) == 0
    assert "keep_parts" not in load_latent(plain / "a.latent.safetensors").run  # earlier runs' records still match
    assert cli_main(["apply", str(photos), str(plain), *common]) == 0 and "1 already done" in capsys.readouterr().out
    assert cli_main(["apply", str(photos), str(kept), *common, "--keep-parts"]) == 0
    once, corrected = load_latent(plain / "a.latent.safetensors"), load_latent(kept / "a.latent.safetensors")
    assert corrected.edits == [EditRecord((("smile", 2.0),), 0, keep_parts=True)] and corrected.run["keep_parts"]
    assert not torch.allclose(corrected.latent, once.latent)
    assert cli_main(["apply", str(photos), str(kept), *common]) == 2  # made with the correction: refused, not mixed
