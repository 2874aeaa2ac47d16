"""A real photo round trip in a headless browser: upload a composite, click its eyes and mouth, embed, apply a
preset, download the full-size edited photo (issue #21). Needs Debian's chromium and playwright, like
``test_browser.py``; screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_suite import REPO
from PIL import Image
from test_browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, pytestmark, sync_api  # the same browser and marks

from editgan_core.photos.synthetic import make_composite
from webapp.ui import build_demo, launch_kwargs

__all__ = ["pytestmark"]  # browser, slow, skipped without chromium or playwright, as test_browser.py
DEMO = REPO / "checkpoints" / "faces64"

# where a click lands in a picture shown with object-fit: contain, as Gradio maps it back to picture pixels
CLICK_JS = """([sel, x, y]) => {
  const img = document.querySelector(sel + ' img'); const r = img.getBoundingClientRect();
  const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
  const ox = (r.width - img.naturalWidth * s) / 2, oy = (r.height - img.naturalHeight * s) / 2;
  return [r.left + ox + (x + 0.5) * s, r.top + oy + (y + 0.5) * s]; }"""


@pytest.fixture(scope="module")
def url():
    demo = build_demo([DEMO], device="cpu")
    _, address, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
    yield address
    demo.close()


def text_has(page, selector: str, text: str, timeout_s: float = 60) -> None:
    page.wait_for_function("([sel, t]) => { const e = document.querySelector(sel); "
                           "return e && e.innerText.includes(t); }", arg=[selector, text], timeout=timeout_s * 1000)


def test_upload_click_three_points_preset_and_download(url, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    comp = make_composite(21)
    photo = tmp_path / "holiday.png"
    Image.fromarray(comp.photo).save(photo)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.goto(url)
        page.wait_for_selector("#current img", timeout=60_000)
        page.set_input_files("#upload input[type=file]", str(photo))
        page.wait_for_selector("#mark-photo img", timeout=60_000)
        text_has(page, "#mark-status", "left eye")
        page.query_selector("#mark-photo").scroll_into_view_if_needed()
        scale = 800 / 1024  # the preview's size: the photo's longest side shown at 800 pixels
        for i, name in enumerate(("left_eye", "right_eye", "mouth")):
            x, y = comp.landmarks[name]
            page.wait_for_function("() => { const i = document.querySelector('#mark-photo img'); "
                                   "return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
            cx, cy = page.evaluate(CLICK_JS, ["#mark-photo", int(x * scale), int(y * scale)])
            page.mouse.click(cx, cy)
            text_has(page, "#mark-status", "Aligned" if i == 2 else f"({i + 2} of 3)")
        page.wait_for_selector("#mark-crop img", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "browser-photo-marked.png"))

        page.get_by_label("fast (encoder only)").check()
        page.click("#embed-btn")
        text_has(page, "#embed-status", "Embedded", 120)
        page.query_selector("#vector-gallery").scroll_into_view_if_needed()
        old = page.eval_on_selector("#vector-result img", "i => i.getAttribute('src')") \
            if page.query_selector("#vector-result img") else None
        page.click("#vector-gallery button.thumbnail-item >> nth=0")
        page.wait_for_function("old => { const i = document.querySelector('#vector-result img'); "
                               "return i && i.getAttribute('src') !== old; }", arg=old, timeout=60_000)
        page.get_by_role("button", name="Export", exact=True).click()
        link = page.locator('tr:has(td[aria-label$="-photo.png"]) a[data-testid="download-link"]').first
        link.wait_for(timeout=60_000)
        with page.expect_download() as download:
            link.click()
        saved = tmp_path / "edited.png"
        download.value.save_as(saved)
        page.screenshot(path=str(ARTIFACTS / "browser-photo-exported.png"), full_page=True)
        browser.close()
    edited = np.asarray(Image.open(saved))
    assert edited.shape == (768, 1024, 3)
    differs = (edited != comp.photo).any(axis=2)
    assert 0 < differs.mean() < 0.02  # the preset's region, in the clicked face, and nothing else
    ys, xs = np.nonzero(differs)
    mouth = np.array(comp.landmarks["mouth"])
    assert np.hypot(xs - mouth[0], ys - mouth[1]).max() < comp.alignment.scale * 45
