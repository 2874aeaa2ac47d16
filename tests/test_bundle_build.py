"""Bring your own generator: ``bundle create`` and the ``add-*`` commands that grow a bundle.

Built from the rosinality fixture (64 px, W+ 10 x 64) with the face template; no training.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from editgan_core import bundle as bundle_mod
from editgan_core import bundle_build, cli
from editgan_core.bundle import MANIFEST, Bundle, BundleError, list_bundles
from editgan_core.bundle_build import PresetOptions, add_discriminator, add_encoder, add_presets, add_segmenter
from editgan_core.bundle_classes import read_class_file, template_path
from editgan_core.model_card import NOTES_MARKER, render_card
from editgan_core.models.encoder import Encoder
from editgan_core.models.segmenter import PixelEnsemble, PixelMLP
from editgan_core.models.stylegan2 import Discriminator, Generator
from editgan_core.pipeline import EditGANPipeline, SegmenterMissingError
from editgan_core.vectors import EditVector, load_vector, save_vector

FACES = read_class_file(template_path("faces"))


@pytest.fixture(scope="module")
def source(shared_fixtures):
    return shared_fixtures / "rosinality_g64.pt"


@pytest.fixture
def created(tmp_path, source) -> Bundle:
    return bundle_build.create_bundle(source, FACES, tmp_path / "checkpoints" / "mine", samples=0,
                                      license_text="CC-BY-NC 4.0", source_url="https://example.org/g.pt")


def entries(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_created_bundle_samples_embeds_and_applies_without_encoder_or_segmenter(tmp_path, source, caplog):
    out = tmp_path / "checkpoints" / "mine"
    bundle = bundle_build.create_bundle(source, FACES, out, samples=2)
    assert entries(out) == ["README.md", "generator.safetensors", MANIFEST, "samples.png", "vectors"]
    assert list_bundles(out.parent) == [out]
    with caplog.at_level(logging.WARNING):
        pipe = EditGANPipeline.from_pretrained(out, device="cpu", lpips=False)
    assert "no encoder" in caplog.text and "slower" in caplog.text
    caps = pipe.capabilities
    assert not caps.has_encoder and not caps.has_segmenter and not caps.can_learn_edits
    assert "average latent" in caps.embedding and len(caps.as_dict()["notes"]) == 4
    assert pipe.latent_shape == (10, 64) and bundle.resolution == 64

    render = pipe.render(pipe.sample_latent(3))
    assert render.image.shape == (64, 64, 3) and render.labels is None
    embedded = pipe.embed(render.image, steps=3)
    assert embedded.steps_done == 3 and np.isfinite(embedded.psnr)
    delta = torch.randn(10, 64) * 0.3
    vector = EditVector(delta=delta, name="random", bundle_id=bundle.id)
    edited = pipe.apply(embedded.latent, [(vector, 2.0)])
    assert torch.allclose(edited, embedded.latent + 2.0 * delta)
    with pytest.raises(SegmenterMissingError, match="Annotate about 16 images"):
        pipe.learn_edit(embedded.latent, np.zeros((64, 64), np.uint8))


@pytest.mark.parametrize("name, has_d", [("rosinality_trainpy_g64.pt", False), ("nvlabs_ada_g64.pkl", True)])
def test_other_formats_become_bundles_too(tmp_path, shared_fixtures, name, has_d):
    source = shared_fixtures / name
    bundle = bundle_build.create_bundle(source, FACES, tmp_path / "b", samples=0)
    imported = bundle_build.import_checkpoint(source)
    pipe = EditGANPipeline.from_pretrained(bundle.root, device="cpu", lpips=False)
    latent = pipe.sample_latent(0)
    with torch.no_grad():  # the bundle renders exactly what the imported generator renders (conv_clamp kept)
        expected = imported.generator.synthesis(latent, noise=pipe.noise).image
    assert torch.equal(pipe.generator.synthesis(latent, noise=pipe.noise).image, expected)
    embedded = pipe.embed(pipe.render(latent).image, steps=2).latent
    delta = torch.randn(pipe.latent_shape)
    assert torch.allclose(pipe.apply(embedded, [(delta, 1.0)]), embedded + delta)
    assert bundle.has("discriminator") == has_d and pipe.capabilities.has_discriminator == has_d
    assert name in bundle.model_card() and imported.source_format in bundle.model_card()


def test_generator_is_stored_exactly_and_the_card_names_source_and_licence(created, source):
    generator, _ = bundle_build.load_generator(source)
    theirs = created.load_generator().state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in generator.state_dict().items())
    src = created.manifest["source"]
    assert src["file"] == source.name and len(src["sha256"]) == 64 and src["license"] == "CC-BY-NC 4.0"
    card = created.model_card()
    assert card == (created.root / "README.md").read_text()
    for text in ("rosinality_g64.pt", "CC-BY-NC 4.0", "64 × 64 px", "10 × 64", "| 11 | upper_lip | `#dc1e3c` |"):
        assert text in card


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["classes"][3].update(color=[1, 2, 256]), "color must be"),
    (lambda d: d["classes"][4].update(id=3), "duplicate id 3"),
    (lambda d: d["edit_groups"].update(smile=[11, 99]), "edit group 'smile' names 99"),
])
def test_bad_classes_are_refused_before_anything_is_written(tmp_path, source, capsys, mutate, message):
    data = json.loads(template_path("faces").read_text())
    mutate(data)
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "out" / "b"
    assert cli.main(["bundle", "create", "--generator", str(source), "--classes", str(path), "--out", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_no_generator_is_refused_before_anything_is_written(tmp_path):
    wrong = tmp_path / "wrong.pt"
    torch.save({"weights": torch.zeros(3)}, wrong)
    with pytest.raises(BundleError, match=r"wrong\.pt is not a usable StyleGAN2 generator"):
        bundle_build.create_bundle(wrong, FACES, tmp_path / "out" / "b", samples=0)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(BundleError, match=r"notes\.txt is not a usable StyleGAN2 generator"):
        bundle_build.create_bundle(text, FACES, tmp_path / "out" / "b", samples=0)
    assert not (tmp_path / "out").exists()


def test_cli_create_and_its_errors(tmp_path, source, capsys):
    out = tmp_path / "ck" / "cli"
    assert cli.main(["bundle", "create", "--generator", str(source), "--template", "cars", "--out", str(out),
                     "--samples", "0", "--title", "Cars?"]) == 0
    assert Bundle.load(out).title == "Cars?" and len(Bundle.load(out).classes) == 32
    assert cli.main(["bundle", "create", "--generator", str(source), "--template", "cars", "--out", str(out),
                     "--samples", "0"]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert cli.main(["bundle", "info", "--bundle", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["capabilities"]["has_encoder"] is False and info["latent_shape"] == [10, 64]


def test_force_replaces_a_bundle_but_never_another_folder(tmp_path, source):
    out = tmp_path / "ck" / "b"
    bundle_build.create_bundle(source, FACES, out, samples=0, title="first")
    with pytest.raises(BundleError, match="already exists"):
        bundle_build.create_bundle(source, FACES, out, samples=0, title="second")
    assert bundle_build.create_bundle(source, FACES, out, samples=0, title="second", force=True).title == "second"
    assert entries(out.parent) == ["b"]  # the old bundle is gone, no temporary folder left
    other = tmp_path / "ck" / "documents"
    other.mkdir()
    (other / "thesis.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a bundle folder"):
        bundle_build.create_bundle(source, FACES, other, samples=0, force=True)
    assert (other / "thesis.txt").read_text() == "keep me"


def test_ids_must_be_unique_among_sibling_bundles(tmp_path, source):
    bundle_build.create_bundle(source, FACES, tmp_path / "a", samples=0, bundle_id="same")
    with pytest.raises(BundleError, match="already used by"):
        bundle_build.create_bundle(source, FACES, tmp_path / "b", samples=0, bundle_id="same")
    with pytest.raises(BundleError, match="bundle id"):
        bundle_build.create_bundle(source, FACES, tmp_path / "c", samples=0, bundle_id="../escape")


@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_mid_create_leaves_no_half_bundle(tmp_path, source, monkeypatch, existing):
    out = tmp_path / "ck" / "b"
    if existing:
        bundle_build.create_bundle(source, FACES, out, samples=0, title="old")
    before = (out / MANIFEST).read_text() if existing else None

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bundle_build, "preview_grid", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        bundle_build.create_bundle(source, FACES, out, samples=2, force=True, title="new")
    assert entries(out.parent) == (["b"] if existing else [])  # no hidden staging folder either
    if existing:
        assert (out / MANIFEST).read_text() == before


def test_add_encoder_checks_the_latent_shape_and_updates_manifest_and_card(created, tmp_path, caplog):
    wrong = Encoder(32, 8, 64)
    wrong.save(tmp_path / "wrong.safetensors")
    with pytest.raises(BundleError, match="predicts W\\+ latents of 8 x 64, but bundle 'mine' uses 10 x 64"):
        add_encoder(created, tmp_path / "wrong.safetensors")
    assert not created.has("encoder") and not (created.root / "encoder.safetensors").exists()

    generator = created.load_generator()
    Encoder(32, 10, 64).set_w_avg(generator.mean_latent(256)).save(tmp_path / "enc.safetensors")
    with caplog.at_level(logging.WARNING):
        grown = add_encoder(created.root, tmp_path / "enc.safetensors", provenance={"kimg": 1.5})
    assert "no better than the average latent" in caplog.text  # untrained: it returns the average face
    entry = grown.manifest["encoder"]
    assert entry["file"] == "encoder.safetensors" and entry["kimg"] == 1.5
    assert {"check_psnr", "mean_latent_psnr"} <= set(entry)
    assert "encoder added from enc.safetensors" in grown.model_card()
    assert "1.5 kimg of training" in grown.model_card()
    with pytest.raises(BundleError, match="already has a encoder"):
        add_encoder(grown, tmp_path / "enc.safetensors")
    assert EditGANPipeline.from_pretrained(grown.root, device="cpu", lpips=False).capabilities.has_encoder


def test_add_segmenter_checks_feature_widths_and_classes(created, tmp_path):
    widths = created.load_generator().feature_channels()
    PixelEnsemble([*widths[:-1], widths[-1] + 1], 19, members=1, hidden=(8, 4)).save(tmp_path / "w.safetensors")
    with pytest.raises(BundleError, match="trained for another generator"):
        add_segmenter(created, [tmp_path / "w.safetensors"])
    PixelEnsemble(widths, 13, members=1, hidden=(8, 4)).save(tmp_path / "k.safetensors")
    with pytest.raises(BundleError, match="predicts 13 classes, but bundle 'mine' has 19"):
        add_segmenter(created, [tmp_path / "k.safetensors"])
    assert not (created.root / "segmenter.safetensors").exists()

    PixelEnsemble(widths, 19, members=2, hidden=(8, 4)).save(tmp_path / "ok.safetensors")
    grown = add_segmenter(created, [tmp_path / "ok.safetensors"], annotations=16)
    assert grown.manifest["segmenter"]["members"] == 2
    assert "trained on 16 annotated images" in grown.model_card()
    pipe = EditGANPipeline.from_pretrained(grown.root, device="cpu", lpips=False)
    assert pipe.capabilities.can_learn_edits
    assert pipe.render(pipe.sample_latent(0)).labels.shape == (64, 64)
    grid = bundle_build.preview_grid(grown.root, count=3, max_side=32)  # samples, then their label maps
    assert Image.open(grid).size == (3 * 34 + 2, 2 * 34 + 2)


def test_add_segmenter_imports_the_official_ensemble_member_files(created, tmp_path):
    widths = created.load_generator().feature_channels()
    paths = []
    for i in range(2):  # the official layout: {'model_state_dict': DataParallel(...).state_dict()}
        member = PixelMLP(sum(widths), 19, (128, 32))
        paths.append(tmp_path / f"car_model_number_{i}.pth")
        torch.save({"model_state_dict": {f"module.{k}": v for k, v in member.state_dict().items()}}, paths[-1])
    grown = add_segmenter(created, paths, annotations=16)
    assert grown.manifest["segmenter"]["members"] == 2
    assert "from car_model_number_0.pth, car_model_number_1.pth" in grown.model_card()


def test_add_discriminator_checks_resolution_and_widths(created, tmp_path, shared_fixtures):
    generator = created.load_generator()
    save_file(Discriminator(32, channels=generator.channels).state_dict(), str(tmp_path / "d32.safetensors"))
    with pytest.raises(BundleError, match="needs one matching its 64-px generator's resolution"):
        add_discriminator(created, tmp_path / "d32.safetensors")
    with pytest.raises(BundleError, match=r"64-px discriminator with widths \{4: 64, 8: 64, 16: 64, 32: 64, 64: 32"):
        add_discriminator(created, shared_fixtures / "nvlabs_ada_g64.pkl")  # converted, but another generator's
    torch.save({"d": Discriminator(64, channels=generator.channels).state_dict(), "args": 1}, tmp_path / "ck.pt")
    grown = add_discriminator(created, tmp_path / "ck.pt")
    assert grown.has("discriminator") and (grown.root / "discriminator.safetensors").is_file()
    assert "Discriminator, to continue GAN training: yes" in grown.model_card()


def test_add_presets_from_npy_and_safetensors(created, tmp_path):
    np.save(tmp_path / "big_smile.npy", np.random.default_rng(0).standard_normal((1, 10, 64)).astype(np.float32))
    np.save(tmp_path / "wrong.npy", np.zeros((1, 14, 512), np.float32))
    with pytest.raises(BundleError, match="uses latent 10x64"):
        add_presets(created, [tmp_path / "wrong.npy"])
    with pytest.raises(BundleError, match="do not all name classes"):
        add_presets(created, [tmp_path / "big_smile.npy"], options=PresetOptions(classes=("upper_lip", "moustache")))
    grown = add_presets(created, [tmp_path / "big_smile.npy"],
                        options=PresetOptions(classes=("upper_lip", 12), scale=0.5, description="Smile"))
    vector = load_vector(grown.vectors_dir / "big_smile.safetensors", expect_bundle_id="mine")
    assert vector.class_ids == [11, 12] and vector.default_scale == 0.5 and vector.source == "preset"
    assert "| big_smile | upper_lip, lower_lip | 0.5 |" in grown.model_card()

    save_vector(EditVector(delta=torch.zeros(10, 64), name="Big Smile", bundle_id="mine"), tmp_path / "v.safetensors")
    with pytest.raises(BundleError, match=r"already in big_smile\.safetensors"):
        add_presets(grown, [tmp_path / "v.safetensors"], options=PresetOptions(name="BIG_SMILE"))
    save_vector(EditVector(delta=torch.zeros(10, 64), name="x", bundle_id="other"), tmp_path / "o.safetensors")
    with pytest.raises(BundleError, match="learned for bundle 'other'"):
        add_presets(grown, [tmp_path / "o.safetensors"])


def test_demo_card_is_generated_from_its_manifest():
    demo = Bundle.load(Path(__file__).resolve().parents[1] / "checkpoints" / "faces64")
    assert (demo.root / "README.md").is_file()
    card = demo.model_card()
    for text in ("611 k images seen in training", "trained with the generator (train.gan --recon)",
                 "trained on 16 annotated images", "| smile | lips, mouth_interior |", NOTES_MARKER):
        assert text in card
    assert card.split(NOTES_MARKER)[0] == render_card(demo.root, demo.manifest, "checkpoints/faces64").split(
        NOTES_MARKER)[0]


def test_notes_below_the_marker_survive_regeneration(created, tmp_path):
    path = created.root / "README.md"
    path.write_text(path.read_text() + "Trained by Ada on her own photos.\n")
    np.save(tmp_path / "v.npy", np.zeros((10, 64), np.float32))
    grown = add_presets(created, [tmp_path / "v.npy"])
    assert grown.model_card().endswith(NOTES_MARKER + "\nTrained by Ada on her own photos.\n")
    assert "| v |" in grown.model_card()


def test_old_run_to_bundle_command_still_works(tmp_path):
    run = tmp_path / "run"
    channels = {4: 16, 8: 16, 16: 8, 32: 8}
    generator = Generator(32, 32, 2, channels=channels)
    run.mkdir()  # a run from before the save/load contract: EMA weights without a config in the file
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, str(run / "generator_ema.safetensors"),
              metadata={"images_seen": "1200"})
    disc = Discriminator(32, channels=channels)  # only in checkpoint.pt, as train.gan kept it before exporting it
    config = json.dumps({"size": 32, "channels": channels})
    torch.save({"d": disc.state_dict(), "config": config}, run / "checkpoint.pt")
    bundle_mod.main(["--run", str(run), "--out", str(tmp_path / "b"), "--id", "demo32"])
    bundle = Bundle.load(tmp_path / "b")
    assert bundle.domain == "faces" and "1 k images seen in training" in bundle.model_card()
    exported = Discriminator.load(tmp_path / "b" / "discriminator.safetensors")
    assert all(torch.equal(exported.state_dict()[k], v) for k, v in disc.state_dict().items())


def test_train_encoder_into_a_bundle(created, tmp_path):
    from editgan_core.train import encoder as train_encoder

    args = ["--bundle", str(created.root), "--out", str(tmp_path / "enc"), "--batch", "2", "--steps", "1",
            "--eval-count", "1", "--no-lpips", "--encoder-size", "16", "--threads", "1"]
    with pytest.raises(SystemExit):
        train_encoder.main([*args, "--generator", "x.pt"])
    train_encoder.main(args)
    grown = Bundle.load(created.root)
    assert grown.manifest["encoder"]["trained"] == "by train.encoder"
    with pytest.raises(SystemExit):  # a second run would replace it: refused before training
        train_encoder.parse_args(args)


def test_the_card_says_where_a_vector_came_from_and_how_its_strength_was_chosen(created):
    extra = {"carried_from": "small-demo", "strength_iou": {"1": 0.2, "1.25": 0.3}}
    save_vector(EditVector(delta=torch.zeros(10, 64), name="brows", bundle_id="mine", default_scale=1.25,
                           extra=extra), created.vectors_dir / "brows.safetensors")
    card = created.write_model_card().read_text()
    row = next(line for line in card.splitlines() if line.startswith("| brows |"))
    assert "carried over from small-demo" in row and "best redraws its paintings" in row and "| 1.25 |" in row


def test_bundles_are_listed_by_their_manifest_order_then_name(tmp_path):
    for name, order in (("a", None), ("b", 5), ("c", 0), ("d", "first")):
        (tmp_path / name).mkdir()
        manifest = {"id": name} if order is None else {"id": name, "order": order}
        (tmp_path / name / MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / MANIFEST).write_text("{ not json")
    assert [p.name for p in list_bundles(tmp_path)] == ["c", "b", "a", "d", "e"]
    shipped = [p.name for p in list_bundles(Path(__file__).resolve().parents[1] / "checkpoints")]
    assert shipped[0] == "faces64"  # the default demo until another one is made the default
