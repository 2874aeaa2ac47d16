"""The studio end to end through its HTTP API (gradio_client), on a tiny bundle served locally.

sample -> embed -> paint -> edit -> save vector -> apply a preset -> refine -> undo -> export.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers_suite import EXAMPLE
from PIL import Image
from safetensors import safe_open

from editgan_core.pipeline import prepare_image
from webapp.ui import build_demo, launch_kwargs

# positions in the outputs every latent-changing endpoint returns (``view_outputs`` in webapp/ui.py, minus the
# buttons, which the API leaves out)
IMAGE, LABELS, OVERLAY, VEC_IMAGE, HISTORY, HISTORY_TEXT, NO_ACTIVE, SLIDER_1 = range(8)

pytestmark = pytest.mark.slow  # a served studio driven over HTTP


@pytest.fixture(scope="module")
def served(tiny_bundle, other_tiny_bundle):
    bundles = [tiny_bundle, other_tiny_bundle]
    demo = build_demo(bundles, device="cpu")
    demo.studio.preview_every_s = 0.0  # a preview at every step: a tiny model's jobs end before the page's interval
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
    yield demo, url
    demo.close()


@pytest.fixture
def client(served):
    return Client(served[1], verbose=False, download_files=False)


def run(job) -> list:
    """Every streamed output tuple of a submitted job, after it has finished."""
    job.result()
    return job.outputs()


def picture(file: dict | str) -> np.ndarray:
    return np.array(Image.open(file["path"] if isinstance(file, dict) else file))


def test_full_editing_session(served, client, tmp_path):
    demo, _ = served
    palette = demo.studio.registry.bundle("tiny-test").palette

    view = client.predict(0, 0.7, api_name="/sample")[3:]
    assert picture(view[IMAGE]).shape == (32, 32, 3)

    job = client.submit(handle_file(str(EXAMPLE)), "precise (encoder + optimisation)", 16, 0.5, api_name="/embed")
    streamed = run(job)
    assert len(streamed) >= 3  # intermediate reconstructions, then the final result
    final = streamed[-1]
    assert "PSNR" in final[2] and picture(final[0]).shape == (32, 32, 3)
    view = final[3:]
    assert "embed (16 steps)" in view[HISTORY_TEXT]

    # paint: a block of eyebrow colour on the label map, sent like the editor would (background + composite)
    label_map = picture(view[LABELS])
    assert label_map.shape == (32, 32, 3)
    edited = label_map.copy()
    edited[6:14, 6:14] = palette[3]
    path = tmp_path / "edited.png"
    Image.fromarray(edited).save(path)
    value = {"background": handle_file(view[LABELS]["path"]), "layers": [], "composite": handle_file(str(path))}
    target, info = client.predict(value, api_name="/paint")
    assert "→ eyebrows" in info and picture(target).shape[:2] == (32, 32)

    with pytest.raises(AppError, match="identical"):
        client.predict({**value, "composite": handle_file(view[LABELS]["path"])}, 5, 0.5, api_name="/edit")

    job = client.submit(value, 12, 0.5, api_name="/edit")
    outputs = run(job)
    assert len(outputs) >= 3
    before_after, region, figures, status = outputs[-1][:4]
    view = outputs[-1][4:]
    assert "region IoU" in status and figures["steps"] == 12
    before, after = picture(before_after[0]), picture(before_after[1])
    inside = picture(region).mean(axis=2) > 0  # outside is dimmed, not black: use the figures for the numbers
    assert inside.any() and figures["change_inside"] > figures["change_outside"]
    diff = np.abs(after.astype(float) - before.astype(float)).mean(axis=2)
    assert diff.max() > 0
    assert figures["loss_best"] < figures["loss_start"]  # moved towards the painted target

    message, gallery, _ = client.predict("Bushy brows", "a block of eyebrow", api_name="/save_vector")
    assert "Bushy brows" in message and [g["caption"] for g in gallery][-1].startswith("Bushy brows")

    edited_image = picture(view[IMAGE])
    view = client.predict("smile", "1.5", 0.5, api_name="/apply_vectors")
    assert view[SLIDER_1]["value"] == 1.5 and view[SLIDER_1]["label"] == "smile" and view[SLIDER_1]["visible"]
    applied_image = picture(view[IMAGE])
    assert not np.array_equal(applied_image, edited_image)

    job = client.submit(10, 0.5, False, api_name="/refine")
    outputs = run(job)
    assert "Refined in 10 steps" in outputs[-1][0]
    view = outputs[-1][1:]
    assert "refine 10 steps (smile×1.5)" in view[HISTORY_TEXT]
    status, *view = client.predict(0, 0.5, True, api_name="/refine")  # only this face's other parts kept
    assert "Refined in 0 steps" in status and "Other parts' colour change" in status
    assert "refine 0 steps, other parts kept (smile×1.5)" in view[HISTORY_TEXT]
    client.predict(0.5, api_name="/undo")

    view = client.predict(0.5, api_name="/undo")
    assert "apply smile×1.5" in view[HISTORY_TEXT] and np.array_equal(picture(view[IMAGE]), applied_image)
    view = client.predict(0.5, api_name="/redo")
    assert "refine" in view[HISTORY_TEXT]
    client.predict(0.5, api_name="/undo")

    files = client.predict(api_name="/export")
    paths = [Path(f["path"]) for f in files]
    assert [p.suffix for p in paths] == [".png", ".png", ".safetensors", ".safetensors"]
    assert np.array_equal(np.array(Image.open(paths[0])), applied_image)
    assert set(map(tuple, np.array(Image.open(paths[1])).reshape(-1, 3))) <= set(map(tuple, palette))
    with safe_open(str(paths[2]), framework="pt") as f:
        assert tuple(f.get_tensor("latent").shape) == demo.studio.registry.get("tiny-test").latent_shape

    exported = client.predict("Bushy brows", api_name="/export_vector")
    _, _, gallery, _ = client.predict(handle_file(exported["path"]), api_name="/import_vector")
    assert [g["caption"] for g in gallery][-1].startswith("Bushy brows (2)")


def test_sessions_are_separate(served, client):
    other = Client(served[1], verbose=False, download_files=False)
    assert "Step 2 of 2: **sample seed 5**" in client.predict(5, 0.7, api_name="/sample")[3 + HISTORY_TEXT]
    assert "Step 1 of 1: **sample seed 0**" in other.predict(0.5, api_name="/undo")[HISTORY_TEXT]  # a fresh start
    with pytest.raises(AppError, match="learn an edit first"):
        client.predict("x", "", api_name="/save_vector")


def test_errors_arrive_as_messages(client):
    with pytest.raises(AppError, match="seed must be"):
        client.predict(2**31 + 5, 0.7, api_name="/sample")
    with pytest.raises(AppError, match="upload a photo"):
        client.predict(None, "fast (encoder only)", 10, 0.5, api_name="/embed")
    client.predict(1, 0.7, api_name="/sample")
    with pytest.raises(AppError, match="no vector named 'nope'"):
        client.predict("nope", "", 0.5, api_name="/apply_vectors")
    with pytest.raises(AppError, match="add at least one vector"):
        client.predict(10, 0.5, api_name="/refine")


def test_cancel_stops_a_running_edit(client, tmp_path):
    view = client.predict(0, 0.7, api_name="/sample")[3:]
    edited = picture(view[LABELS])
    edited[6:14, 6:14] = (230, 230, 40)  # eyebrows
    Image.fromarray(edited).save(tmp_path / "edited.png")
    value = {"background": handle_file(view[LABELS]["path"]), "layers": [],
             "composite": handle_file(str(tmp_path / "edited.png"))}
    job = client.submit(value, 200, 0.5, api_name="/edit")
    started = time.monotonic()
    while not job.outputs() and time.monotonic() - started < 30:  # wait for the first streamed preview
        time.sleep(0.02)
    assert client.predict(api_name="/cancel") == "Cancelled."
    while not job.done() and time.monotonic() - started < 30:
        time.sleep(0.02)
    assert job.done()
    finals = [out[2] for out in job.outputs() if isinstance(out[2], dict)]  # the figures of a finished edit
    assert not finals or finals[-1]["steps"] < 200  # cancelled outright, or stopped early with the best so far


def test_upload_limits_and_bad_files(client, tmp_path):
    big = tmp_path / "big.npy"
    big.write_bytes(b"\0" * (11 * 1024 * 1024))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict(handle_file(str(big)), api_name="/import_vector")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a vector")
    with pytest.raises(AppError, match="not a safetensors file"):
        client.predict(handle_file(str(bad)), api_name="/import_vector")


def test_model_picker_starts_a_fresh_session_on_the_other_model(served, client):
    client.predict(7, 0.7, api_name="/sample")
    outputs = client.predict("tiny-other", 0.5, api_name="/select_model")
    info, view = outputs[0], outputs[-(SLIDER_1 + 6):]  # the view comes last: pictures, history, 6 slots
    assert "32 px" in info and "Step 1 of 1: **sample seed 0**" in view[HISTORY_TEXT]
    other_face = picture(view[IMAGE])
    client.predict("tiny-test", 0.5, api_name="/select_model")
    view = client.predict(0, 0.7, api_name="/sample")[3:]
    assert not np.array_equal(picture(view[IMAGE]), other_face)  # a different generator


def test_uploaded_photo_keeps_its_exif_orientation(client, tmp_path):
    pixels = np.zeros((40, 64, 3), np.uint8)
    pixels[:, :32] = (220, 40, 40)  # left red, right blue: turning it shows up as top/bottom
    pixels[:, 32:] = (40, 40, 220)
    photo = Image.fromarray(pixels)
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "phone.jpg"
    photo.save(path, exif=exif, quality=95)
    source = client.predict(handle_file(str(path)), "fast (encoder only)", 10, 0.5, api_name="/embed")[0]
    expected = prepare_image(path, 32)
    assert np.abs(picture(source).astype(int) - expected.astype(int)).max() <= 2
    assert expected[2, 16, 0] > expected[2, 16, 2] and expected[-3, 16, 2] > expected[-3, 16, 0]  # turned
