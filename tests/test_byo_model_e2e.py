"""Bring your own StyleGAN2, end to end on the CPU: an NVlabs snapshot becomes a bundle with ``bundle create``,
opens in the pipeline and the studio, samples, embeds without an encoder, applies a vector, and the vector
saved in the studio is still there after a restart, where it can be renamed and deleted.

The snapshot is ``../shared/fixtures/nvlabs_ada_g64.pkl`` (genuine NVlabs pickle, random weights, its own
random ``w_avg``); the studio runs on the plain-Python ``Studio`` and, for the named endpoints, over HTTP.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers_suite import EXAMPLE
from PIL import Image
from safetensors import safe_open

from editgan_core import cli
from editgan_core.bundle import Bundle, list_bundles
from editgan_core.models.checkpoint import LATENT_AVG_KEY, load_generator, save_generator
from editgan_core.models.serialization import CheckpointError, read_metadata
from editgan_core.pipeline import EditGANPipeline, InputError, SegmenterMissingError
from editgan_core.train import gan
from editgan_core.vectors import VectorError
from webapp.actions.model import CARD_CUT, card_markdown, card_picture, card_text
from webapp.controller import Studio
from webapp.outcomes import EmbedOutcome, Notice, Progress
from webapp.registry import ModelRegistry
from webapp.session import SessionBox, close_box
from webapp.ui import build_demo, launch_kwargs

TOL = 1e-3
BUNDLE_ID = "ada-faces"


@pytest.fixture(scope="module")
def checkpoints(shared_fixtures, tmp_path_factory):
    """A checkpoints folder holding the bundle made from the NVlabs snapshot, as the README tells users to."""
    folder = tmp_path_factory.mktemp("byo") / "checkpoints"
    assert cli.main(["bundle", "create", "--generator", str(shared_fixtures / "nvlabs_ada_g64.pkl"), "--template",
                     "faces", "--out", str(folder / BUNDLE_ID), "--title", "My snapshot", "--license", "CC-BY 4.0",
                     "--samples", "2"]) == 0
    return folder


@pytest.fixture
def own_library(monkeypatch):
    """No EDITGAN_HOME, as on a user's machine: vectors go into the bundle's own user_vectors folder."""
    monkeypatch.delenv("EDITGAN_HOME", raising=False)


def restarted(checkpoints, *first) -> tuple[Studio, SessionBox]:
    """A new app over the same folders, as after a process restart, and a new visitor."""
    registry = ModelRegistry(list(first), device="cpu", scan=lambda: list_bundles(checkpoints))
    registry.refresh()
    return Studio(registry, preview_every_s=0), SessionBox()


# ------------------------------------------------------------------------------------- the average latent


def test_the_bundle_truncates_around_the_snapshots_own_w_avg(checkpoints, shared_fixtures):
    expected = torch.load(shared_fixtures / "nvlabs_ada_g64_expected.pt", weights_only=True)
    root = checkpoints / BUNDLE_ID
    with safe_open(str(root / "generator.safetensors"), framework="pt") as f:
        assert LATENT_AVG_KEY in f.keys()  # noqa: SIM118 (not a dict)
    assert "snapshot's own" in json.loads((root / "manifest.json").read_text())["generator"]["w_avg"]

    pipe = EditGANPipeline.from_pretrained(root, device="cpu", lpips=False)
    psi = expected["truncation_psi"]
    latent = pipe.latent_from_z(expected["z"], psi)
    assert (latent - expected["w_truncated"]).abs().max() <= TOL
    with torch.no_grad():
        image = pipe.generator.synthesis(latent, noise=pipe.noise).image
    assert (image - expected["image_truncated"]).abs().max() <= TOL

    estimated = EditGANPipeline(pipe.bundle, pipe.generator, device=torch.device("cpu"))  # the old way: 4096 samples
    assert (estimated.latent_from_z(expected["z"], psi) - expected["w_truncated"]).abs().max() > 100 * TOL


def test_a_stored_average_is_checked_and_training_can_still_start_from_the_file(tmp_path):
    first = tmp_path / "first"
    gan.main(["--domain", "faces", "--size", "32", "--preset", "tiny32", "--out", str(first), "--batch", "4",
              "--kimg", "0.004", "--ckpt-every", "1", "--sample-every", "8", "--threads", "1"])
    generator, _ = load_generator(first / "generator_ema.safetensors")
    w_avg = torch.randn(1, generator.style_dim)
    metadata = read_metadata(first / "generator_ema.safetensors")  # images_seen: how far the run got
    save_generator(generator, first / "generator.safetensors", w_avg, metadata)  # what bundle create writes
    assert torch.equal(load_generator(first / "generator.safetensors")[1], w_avg)
    with pytest.raises(CheckpointError, match="latent_avg has 3 values"):
        save_generator(generator, tmp_path / "bad.safetensors", torch.zeros(3))
    second = tmp_path / "second"  # train.gan --init reads generator.safetensors strictly: the average is set aside
    gan.main(["--domain", "faces", "--size", "32", "--preset", "tiny32", "--out", str(second), "--batch", "4",
              "--kimg", "0.008", "--ckpt-every", "1", "--sample-every", "8", "--threads", "1", "--init", str(first)])
    state = torch.load(second / "checkpoint.pt", weights_only=True)
    assert state["images_seen"] == 8 and state["step"] == 1  # 4 inherited images + 1 step of 4


# ------------------------------------------------------------------------------------- the studio, in Python


def first_visit(studio: Studio, box: SessionBox, vector_file) -> None:
    """Open the new model, see what it says about itself, sample, embed, and bring a vector along."""
    session = studio.session(box, BUNDLE_ID)
    pipe = studio.pipeline(session)
    info = studio.model_info(pipe)
    assert "nvlabs_ada_g64.pkl" in info.card and "CC-BY 4.0" in info.card and "](samples.png)" not in info.card
    assert info.samples is not None and info.samples.shape[1] == 2 * 64 + 3 * 2  # two samples, no label row
    assert set(info.notes) >= {"encoder", "segmenter"} and not info.can_segment and not info.has_encoder
    assert "slower" in info.notes["encoder"] and "Annotate" in info.notes["segmenter"]

    sampled = studio.sample(session, 4, 0.7)
    assert sampled.image.shape == (64, 64, 3) and sampled.labels is None
    assert studio.view(session).label_picture is None
    items = list(studio.embed(session, str(EXAMPLE), 3))
    assert [type(i) for i in items] == [Progress] * 3 + [EmbedOutcome] and np.isfinite(items[-1].psnr)
    fast = studio.embed(session, str(EXAMPLE), 0)  # no encoder: no "fast" embedding, optimisation instead
    assert isinstance(notice := next(fast), Notice) and "no encoder" in notice.text
    fast.close()
    for refused in (lambda: studio.read_paint(session, studio.view(session).editor),
                    lambda: list(studio.edit(session, None, 3)), lambda: list(studio.refine(session, 3))):
        with pytest.raises(SegmenterMissingError, match="Annotate about 16 images"):
            refused()

    np.save(vector_file, np.random.default_rng(0).normal(size=(1, *pipe.latent_shape)).astype("f4"))
    saved = studio.import_vector(session, vector_file)  # a vector brought along, in the official EditGAN format
    before = session.current.image
    applied = studio.apply_vectors(session, [(saved.name, 1.5)])
    assert applied.active == (("random_direction", 1.5),) and not np.array_equal(applied.image, before)


def rename_after_restart(studio: Studio, box: SessionBox) -> None:
    """The vector is still there; renaming it keeps the steps that use it adjustable."""
    session = studio.session(box, BUNDLE_ID)
    assert studio.gallery(session)[1] == ["random_direction"]
    assert studio.is_preset(session, "random direction") is False
    studio.apply_vectors(session, [("random_direction", 1.0)])
    studio.rename_vector(session, "random_direction", "Wild turn")
    assert studio.active(session) == [("Wild turn", 1.0)] and session.current.label == "apply Wild turn×1"
    assert studio.set_strengths(session, [2.0]).active == (("Wild turn", 2.0),)


def delete_after_restart(studio: Studio, box: SessionBox) -> None:
    """Deleting an active vector keeps the picture, and changing its strength says what to do instead."""
    session = studio.session(box, BUNDLE_ID)
    assert studio.gallery(session)[1] == ["Wild turn"]
    studio.apply_vectors(session, [("wild turn", 0.5)])
    gone, notice = studio.delete_vector(session, "WILD TURN")
    assert gone == "Wild turn" and "stays in the picture" in notice.text
    with pytest.raises(InputError, match="no longer in the library"):
        studio.set_strengths(session, [1.0])
    assert studio.remove_vector(session, 0).active == ()  # the way out the message names


def test_snapshot_to_studio_to_restart(checkpoints, own_library, tiny_bundle, tmp_path):
    tiny = tiny_bundle
    registry = ModelRegistry([tiny], device="cpu", scan=lambda: list_bundles(checkpoints))
    studio, box = Studio(registry, preview_every_s=0), SessionBox()
    assert [i for _, i in studio.model_choices()] == ["tiny-test"]
    assert ("My snapshot (64 px)", BUNDLE_ID) in studio.model_choices(refresh=True)  # created since the start
    first_visit(studio, box, tmp_path / "random_direction.npy")
    close_box(box)
    library = checkpoints / BUNDLE_ID / "user_vectors"  # the bundle's own library
    assert [p.name for p in library.glob("*.safetensors")] == ["random_direction.safetensors"]

    for stage in (rename_after_restart, delete_after_restart):
        studio, box = restarted(checkpoints, tiny)
        stage(studio, box)
        close_box(box)

    studio, box = restarted(checkpoints, tiny)
    assert studio.gallery(studio.session(box, BUNDLE_ID))[1] == []
    assert list(library.glob("*.safetensors")) == []
    close_box(box)


def test_presets_cannot_be_renamed_or_deleted_from_the_studio(tiny_bundle):
    studio = Studio(ModelRegistry([tiny_bundle], device="cpu"))
    box = SessionBox()
    session = studio.session(box)
    assert studio.is_preset(session, "smile") is True and studio.is_preset(session, "nope") is None
    with pytest.raises(VectorError, match="preset"):
        studio.rename_vector(session, "smile", "grin")
    with pytest.raises(VectorError, match="preset"):
        studio.delete_vector(session, "smile")
    assert "smile" in studio.gallery(session)[1]
    close_box(box)


def test_the_card_as_the_page_shows_it(checkpoints, tmp_path):
    text = "# Title\n![samples](samples.png)\n![logo](https://example.org/logo.png)\n## Section\n#nohash\n"
    assert card_markdown(text) == "## Title\n![logo](https://example.org/logo.png)\n### Section\n#nohash\n"
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("manifest.json", "generator.safetensors"):
        (copy / name).write_bytes((checkpoints / BUNDLE_ID / name).read_bytes())
    (copy / "README.md").write_text("x" * 100_000)  # grown far past a card: read only in part
    bundle = Bundle.load(copy)
    assert card_text(bundle).endswith(CARD_CUT) and len(card_text(bundle)) < 50_000
    assert card_picture(bundle) is None  # no preview grid in this folder
    Image.new("RGB", (5000, 10)).save(copy / "samples.png")
    assert card_picture(bundle) is None  # not a preview grid


# ------------------------------------------------------------------------------------- over HTTP


@pytest.mark.slow  # a served studio driven over HTTP
def test_the_new_model_and_its_vectors_over_the_api(checkpoints, tiny_bundle, tmp_path):
    demo = build_demo([tiny_bundle], device="cpu",
                      scan=lambda: list_bundles(checkpoints))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
    try:
        client = Client(url, verbose=False, download_files=False)
        with pytest.raises(AppError):  # not listed yet: the picker refuses it
            client.predict(BUNDLE_ID, 0.5, api_name="/select_model")
        refreshed = client.predict("tiny-test", api_name="/refresh_models")  # the picker's update: value, choices
        assert refreshed["value"] == "tiny-test" and [i for _, i in refreshed["choices"]] == ["tiny-test", BUNDLE_ID]
        outputs = client.predict(BUNDLE_ID, 0.5, api_name="/select_model")
        assert "My snapshot" in outputs[0] and "no encoder" in outputs[0]
        assert any(isinstance(o, str) and "Annotate about 16 images" in o for o in outputs)
        with pytest.raises(AppError, match="Annotate about 16 images"):
            client.predict(10, 0.5, api_name="/refine")

        vector = tmp_path / "turn.npy"
        np.save(vector, np.random.default_rng(1).normal(size=(1, 10, 64)).astype("f4"))
        client.predict(handle_file(str(vector)), api_name="/import_vector")
        view = client.predict("turn", "1.5", 0.5, api_name="/apply_vectors")
        status, _, gallery, choice, *view = client.predict("turn", "Head turn", 0.5, api_name="/rename_vector")
        assert "Head turn" in status and [g["caption"] for g in gallery] == ["Head turn · yours"]
        assert choice["value"] == "Head turn" and choice["choices"] == [["Head turn", "Head turn"]]
        assert "apply Head turn×1.5" in view[5] and view[7]["label"] == "Head turn"  # history text, first slider
        status, gallery, _, *view = client.predict("head turn", 0.5, api_name="/delete_vector")  # (the row: no output)
        assert "Deleted" in status and gallery == [] and np.array(Image.open(view[0]["path"])).shape == (64, 64, 3)
        with pytest.raises(AppError, match="no longer in the library"):
            client.predict("Head turn", "1.0", 0.5, api_name="/apply_vectors")

        client.predict("tiny-test", 0.5, api_name="/select_model")
        with pytest.raises(AppError, match="preset"):
            client.predict("smile", "grin", 0.5, api_name="/rename_vector")
        with pytest.raises(AppError, match="preset"):
            client.predict("smile", 0.5, api_name="/delete_vector")
    finally:
        demo.close()
    assert Bundle.load(checkpoints / BUNDLE_ID).id == BUNDLE_ID
