"""The studio's photo round trip through its HTTP API: align from marks -> embed -> preset -> export full size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from editgan_core.photos.synthetic import make_composite
from webapp.actions.photo import PhotoActions
from webapp.photo_state import BOX
from webapp.session import Session
from webapp.ui import build_demo, launch_kwargs

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "faces64"
FAST = "fast (encoder only)"

pytestmark = pytest.mark.slow  # a served studio driven over HTTP


@pytest.fixture(scope="module")
def served():
    demo = build_demo([DEMO], device="cpu")
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
    yield demo, url
    demo.close()


def test_align_embed_edit_export_full_size(served, tmp_path):
    url = served[1]
    client = Client(url, verbose=False, download_files=False)
    comp = make_composite(11)
    photo = tmp_path / "photo.png"
    Image.fromarray(comp.photo).save(photo)
    marks = json.dumps({k: list(v) for k, v in comp.landmarks.items()})
    _, status, crop, typed = client.predict(handle_file(str(photo)), marks, api_name="/align_photo")
    assert "Aligned" in status and json.loads(typed).keys() == {"left_eye", "right_eye", "mouth"}
    aligned = np.array(Image.open(crop["path"]))
    assert aligned.shape == (64, 64, 3)
    source = client.predict(handle_file(str(photo)), FAST, 10, 0.5, api_name="/embed")[0]
    assert np.array_equal(np.array(Image.open(source["path"])), aligned)  # the crop, not the centre square
    client.predict("smile", "1.0", 0.5, api_name="/apply_vectors")
    files = {Path(f["path"]).name.rsplit("-", 1)[-1] if "-before-" not in f["path"] else "before-after.png": f["path"]
             for f in client.predict(api_name="/export")}
    edited = np.array(Image.open(files["photo.png"]))
    assert edited.shape == (768, 1024, 3)
    differs = (edited != comp.photo).any(axis=2)
    mouth = np.rint(comp.landmarks["mouth"]).astype(int)
    assert differs[mouth[1] - 12: mouth[1] + 12, mouth[0] - 12: mouth[0] + 12].any()
    assert differs.mean() < 0.02  # the edit region only
    assert {"crop.png", "before-after.png"} <= files.keys(), files

    with pytest.raises(AppError, match="mouth"):
        (lx, ly), (rx, ry) = comp.landmarks["left_eye"], comp.landmarks["right_eye"]
        on_eye_line = {**json.loads(marks), "mouth": [2 * rx - lx, 2 * ry - ly]}
        client.predict(handle_file(str(photo)), json.dumps(on_eye_line), api_name="/align_photo")
    other = Client(url, verbose=False, download_files=False)  # a centre-square embedding exports no full photo
    other.predict(handle_file(str(photo)), FAST, 10, 0.5, api_name="/embed")
    assert not any("photo" in Path(f["path"]).name for f in other.predict(api_name="/export"))


def test_clicks_on_a_preview_are_photo_pixels(served):
    """A photo larger than the preview: clicks are scaled back, three give the alignment, a fourth starts anew."""
    demo, _ = served
    studio = demo.studio
    assert isinstance(studio, PhotoActions)
    session = Session("faces64-demo", (10, 128), None)
    comp = make_composite(12, photo_size=(1600, 1200), face_side=(400, 500))
    view = studio.load_photo(session, comp.photo)
    assert max(view.preview.shape[:2]) == 800 and "left eye" in view.status
    scale = session.photo.preview_scale
    for name in ("left_eye", "right_eye", "mouth"):
        x, y = comp.landmarks[name]
        view = studio.mark(session, int(x * scale), int(y * scale))
    assert "Aligned" in view.status and view.crop.shape == (64, 64, 3)
    assert np.allclose(session.photo.marks[0], comp.landmarks["left_eye"], atol=1 / scale)
    assert studio.mark(session, 10, 10).crop is None and len(session.photo.marks) == 1
    view = studio.set_mark_mode(session, BOX)
    assert "corner" in view.status
    session.close()
