"""The annotate section in a real headless browser: draw samples, name a region with one click, paint a stroke
with the mouse, save the label map (Debian chromium + playwright, as ``test_browser.py``)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from test_browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, stroke, sync_api
from test_browser import pytestmark as browser_marks

from editgan_core.annotation.store import AnnotationStore
from editgan_core.bundle import Bundle
from webapp.ui import build_demo, launch_kwargs

pytestmark = browser_marks  # browser, slow, skipped without Debian's chromium


@pytest.fixture
def page(tiny_bundle):
    demo = build_demo([tiny_bundle], device="cpu")
    _, address, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(address)
            page.wait_for_selector("#current img", timeout=60_000)
            yield page
            browser.close()
    finally:
        demo.close()


def text_has(page, selector: str, needle: str, timeout_s: float = 60) -> None:
    page.wait_for_function("([sel, t]) => { const e = document.querySelector(sel); "
                           "return e && e.innerText.includes(t); }",
                           arg=[selector, needle], timeout=timeout_s * 1000, polling=50)


def test_paint_and_save_one_annotation(page, tiny_bundle):
    page.click("#annotate button >> nth=0")  # open the section
    count = page.locator("#annotate input[type=number]").first
    count.fill("2")
    page.click("#ann-draw")
    text_has(page, "#ann-progress", "0 of 2 done")
    page.get_by_label("hair", exact=True).check()
    picture = page.locator("#ann-picture img")
    picture.scroll_into_view_if_needed()
    box = picture.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)  # one-click region assignment
    text_has(page, "#ann-status", "set to hair")
    time.sleep(3.5)  # the painter canvas settles its size for a few seconds after a new value
    saved = ""
    for _ in range(3):  # a loaded machine may drop the first stroke while the canvas sets itself up
        stroke(page, "#ann-painter")
        page.click("#ann-save")
        text_has(page, "#ann-status", "Saved 001-seed0")  # this save's answer (a retry's status said "Opened")
        text_has(page, "#ann-progress", "1 of 2 done")
        saved = page.inner_text("#ann-status")
        if "(0 pixel(s) painted" not in saved:
            break
        page.click("#ann-gallery button.thumbnail-item >> nth=0")  # reopen the first image and paint again
        text_has(page, "#ann-status", "Opened 001")
        time.sleep(3.5)
    page.screenshot(path=str(ARTIFACTS / "browser-annotate.png"), full_page=True)
    assert "Saved 001-seed0" in saved and "(0 pixel(s) painted" not in saved, saved
    store = AnnotationStore.for_bundle(Bundle.load(tiny_bundle))
    labels = store.labels("001-seed0")
    spot = int(0.1 * labels.shape[0])
    assert labels[spot, spot] == 2  # the clicked pixel's region was named hair (clicks map to model pixels)
    preview = np.asarray(Image.open(store.folder / "001-seed0.preview.png").convert("RGB"))
    assert preview.shape == (*labels.shape, 3)
