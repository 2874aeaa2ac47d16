"""The studio in a real headless browser: paint a stroke with the mouse, learn the edit, move a strength slider.

Needs Debian's chromium (``apt-get install chromium``) and the ``playwright`` package; never downloads a
browser. Screenshots go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path

import pytest
from helpers_suite import REPO

from webapp.ui import build_demo, launch_kwargs

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None,
                       reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")


@pytest.fixture(scope="module")
def url(tiny_bundle):
    # EDITGAN_BROWSER_BUNDLE=checkpoints/faces64 measures the timings on a real bundle instead.
    bundle = os.environ.get("EDITGAN_BROWSER_BUNDLE") or tiny_bundle
    demo = build_demo([bundle], device="cpu")
    _, address, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
    yield address
    demo.close()


@pytest.fixture(scope="module")
def page(url):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("#current img", timeout=60_000)  # the first random face is in
        page.ready_s = time.perf_counter() - started
        yield page
        browser.close()


def src(page, selector: str) -> str | None:
    element = page.query_selector(f"{selector} img")
    return element.get_attribute("src") if element else None


def wait_for_new_src(page, selector: str, old: str | None, timeout_s: float = 60) -> str:
    page.wait_for_function("([sel, old]) => { const i = document.querySelector(sel + ' img'); "
                           "return i && i.getAttribute('src') !== old; }", arg=[selector, old],
                           timeout=timeout_s * 1000, polling=20)
    return src(page, selector)


def stroke(page, painter: str = "#painter") -> None:
    """Drag the brush across the middle of the paint canvas."""
    canvas = page.query_selector_all(f"{painter} canvas")[0]
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 90, cy + 20)
    page.mouse.down()
    for i in range(1, 5):  # few points: every move redraws the canvas, which is slow in software rendering
        page.mouse.move(cx - 90 + 45 * i, cy + 20 - 12 * i)
    page.mouse.up()
    time.sleep(0.5)


def paint_and_check(page, attempts: int = 3) -> str:
    """Paint a stroke and press "Check painting" until the app reports changed pixels.

    On a loaded machine the canvas may still be setting itself up (size, background) when the first
    stroke arrives and drop it; a person would simply paint again, and so does the test.
    """
    info = ""
    for attempt in range(attempts):
        stroke(page)
        page.get_by_role("button", name="Check painting").click()
        try:
            page.wait_for_function("() => document.querySelector('#paint-info').innerText.includes('pixels changed')",
                                   timeout=15_000)
            return page.inner_text("#paint-info")
        except sync_api.TimeoutError:
            info = page.inner_text("#paint-info")
            page.screenshot(path=str(ARTIFACTS / f"browser-paint-attempt{attempt + 1}.png"))
    raise AssertionError(f"the painted stroke never reached the app; last message: {info!r}")


def test_paint_a_stroke_and_learn_the_edit(page):
    before = src(page, "#current")
    time.sleep(3.5)  # the editor canvas settles its size for a few seconds after it appears
    assert "pixels changed" in paint_and_check(page)
    page.screenshot(path=str(ARTIFACTS / "browser-painted.png"))

    page.click("#edit-btn")
    page.wait_for_function("() => document.querySelector('#edit-status').innerText.includes('Done in')",
                           timeout=120_000)
    after = wait_for_new_src(page, "#current", before)
    assert after != before  # content-addressed file names: a new picture
    assert len(page.query_selector_all("#compare img")) == 2
    page.screenshot(path=str(ARTIFACTS / "browser-edited.png"), full_page=True)


def test_strength_slider_round_trip(page):
    page.query_selector("#vector-gallery").scroll_into_view_if_needed()
    old = src(page, "#vector-result")
    page.click("#vector-gallery button.thumbnail-item >> nth=0")
    old = wait_for_new_src(page, "#vector-result", old)
    time.sleep(2)  # let the paint canvas finish redrawing for the new picture: measure the slider alone
    track = page.query_selector("#strength-0 input[type=range]")
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    times = []
    for fraction in (0.2, 0.8, 0.35, 0.65, 0.5, 0.9):
        started = time.perf_counter()  # from the click (the slider fires its input event on the click)
        page.mouse.click(box["x"] + fraction * box["width"], box["y"] + box["height"] / 2)
        old = wait_for_new_src(page, "#vector-result", old, timeout_s=10)
        times.append(time.perf_counter() - started)
        time.sleep(0.05)
    median_ms = 1000 * statistics.median(times)
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps(
        {"page_load_in_browser_s": round(page.ready_s, 2), "slider_round_trip_ms": [round(1000 * t) for t in times],
         "slider_round_trip_median_ms": round(median_ms)}, indent=2))
    page.screenshot(path=str(ARTIFACTS / "browser-vectors.png"))
    assert median_ms < 1500, f"strength slider round trip {median_ms:.0f} ms"


# ------------------------------------------------------------------------------------- issue #23: page defects

LABEL_OVERLAPS_JS = """() => {
  const shown = (img) => {  // the painted part of an object-fit: contain picture
    const r = img.getBoundingClientRect();
    if (!img.naturalWidth) return r;
    const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
    const w = img.naturalWidth * s, h = img.naturalHeight * s;
    return {left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2,
            right: r.left + (r.width + w) / 2, bottom: r.top + (r.height + h) / 2};
  };
  const hit = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5
                        && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  const out = [];
  for (const block of document.querySelectorAll('.block')) {
    const label = block.querySelector(':scope > label[data-testid="block-label"]');
    if (!block.offsetParent || !label || !label.getBoundingClientRect().width) continue;
    const others = [...block.querySelectorAll('img')].map(i => ['picture', shown(i)])
      .concat([...block.querySelectorAll('.icon-button-wrapper')].map(e => ['buttons', e.getBoundingClientRect()]));
    for (const [kind, r] of others)
      if (r.right - r.left > 0 && hit(label.getBoundingClientRect(), r))
        out.push(`${block.id || block.className} "${label.innerText.trim()}" covers its ${kind}`);
  }
  return out;
}"""


def history_label(page) -> str:
    return page.inner_text("#history-text")


def open_palette(page, n_colours: int, tries: int = 3) -> list:
    """The brush palette's swatches, once all ``n_colours`` are shown: on a loaded box the editor can re-render
    and close the palette just after it opened (seen in CI), so it is opened again."""
    swatch = "#painter menu.swatch button.color[title]"
    for _ in range(tries):
        page.click("#painter button[aria-label='Color']")
        try:
            page.wait_for_function("([sel, n]) => document.querySelectorAll(sel).length === n", arg=[swatch, n_colours],
                                   timeout=10_000)
        except sync_api.TimeoutError:
            continue
        swatches = page.query_selector_all(swatch)
        if len(swatches) == n_colours:
            return swatches
    raise AssertionError(f"the brush palette did not show its {n_colours} colours")


def test_painter_palette_brush_and_restore(page):
    """Palette swatches carry the class names and an outline; Clear is gone, Restore is there; one dab of the
    default brush changes one or two model pixels; Restore takes the painting back."""
    page.query_selector("#painter").scroll_into_view_if_needed()
    assert not page.is_visible("#painter button[aria-label='Clear canvas']")
    page.click("#painter button[aria-label='Brush']")
    legend = [s.strip() for s in page.eval_on_selector_all("#paint-legend .legend > span",
                                                           "items => items.map(e => e.textContent)")]
    swatches = open_palette(page, len(legend))
    assert [s.get_attribute("title") for s in swatches] == legend  # every colour named, in the legend's order
    white = [s for s in swatches if s.evaluate("b => b.style.backgroundColor") == "rgb(255, 255, 255)"]
    assert white and white[0].evaluate("b => getComputedStyle(b).boxShadow") != "none"  # outlined: it shows
    page.screenshot(path=str(ARTIFACTS / "browser-palette.png"))
    page.click("#painter button[aria-label='Color']")  # close the palette again

    page.click("#paint-restore")  # a clean canvas of the current picture, whatever earlier tests painted
    page.wait_for_function("() => document.querySelector('#paint-info').innerText.includes('No change')")
    time.sleep(1)
    canvas = page.query_selector_all("#painter canvas")[0].bounding_box()
    x, y = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] * 0.2
    for _attempt in range(3):  # a loaded machine may drop the first dab while the canvas settles
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 1, y)
        page.mouse.up()
        page.get_by_role("button", name="Check painting").click()
        try:
            page.wait_for_function("() => document.querySelector('#paint-info').innerText.includes('changed')",
                                   timeout=15_000)
            break
        except sync_api.TimeoutError:
            x += 7
    changed = int(page.inner_text("#paint-info").split()[0])
    (ARTIFACTS / "browser-brush.json").write_text(json.dumps({"default_brush_dab_model_pixels": changed}))
    assert 1 <= changed <= 4, page.inner_text("#paint-info")  # was ~29 (a 6-pixel-wide brush)

    page.click("#paint-restore")
    page.wait_for_function("() => document.querySelector('#paint-info').innerText.includes('No change')")
    time.sleep(1)
    page.get_by_role("button", name="Check painting").click()
    time.sleep(2)
    assert "No change" in page.inner_text("#paint-info")  # the dab is gone from the canvas


def test_strength_follows_keys_and_typing_and_the_last_value_wins(page):
    if not page.is_visible("#strength-0"):
        page.click("#vector-gallery button.thumbnail-item >> nth=0")
        page.wait_for_selector("#strength-0", state="visible")
    number = page.query_selector("#strength-0 input[type=number]")
    track = page.query_selector("#strength-0 input[type=range]")
    track.scroll_into_view_if_needed()

    old = src(page, "#vector-result")
    number.fill("1.7")
    number.press("Enter")
    old = wait_for_new_src(page, "#vector-result", old, timeout_s=15)  # typing redraws (was: nothing)
    page.wait_for_function("() => document.querySelector('#history-text').innerText.includes('×1.7')")

    track.focus()
    for _ in range(6):  # quick presses overlap on the server: the last value must be the final state
        page.keyboard.press("ArrowRight")
    final = float(track.input_value())
    assert final == pytest.approx(2.0)
    wait_for_new_src(page, "#vector-result", old, timeout_s=15)  # the arrow keys redraw
    page.wait_for_function("v => document.querySelector('#history-text').innerText.includes('×' + v)",
                           arg=f"{final:g}", timeout=15_000)
    time.sleep(1.5)  # nothing older may land afterwards
    assert f"×{final:g}" in history_label(page)


def test_rejected_import_is_said_in_the_import_status(page, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a vector at all")
    page.get_by_text("Your vectors: rename, delete, import, export").click()
    page.set_input_files("#vector-library input[type=file]", str(bad))
    page.wait_for_function("() => [...document.querySelectorAll('#vector-library .prose')]"
                           ".some(e => e.innerText.includes('Not imported'))", timeout=30_000)
    tracker = page.query_selector("#vector-gallery [data-testid=status-tracker]")
    assert "error" not in (tracker.get_attribute("class") or "") and "Error" not in tracker.inner_text()
    assert page.is_visible("#vector-gallery button.thumbnail-item >> nth=0")


def test_narrow_screen_labels_do_not_cover_pictures(page, url):
    narrow = page.context.browser.new_page(viewport={"width": 400, "height": 900})
    try:
        narrow.goto(url)
        # the picture sits below the fold on a narrow screen and is lazy-loaded: it has no size
        # (counts as hidden) until it is scrolled near, so wait for it to exist, then bring it in
        picture = narrow.wait_for_selector("#current img", state="attached", timeout=60_000)
        picture.scroll_into_view_if_needed()
        narrow.wait_for_selector("#current img", state="visible", timeout=60_000)
        narrow.evaluate("window.scrollTo(0, 0)")
        time.sleep(2)
        assert narrow.evaluate(LABEL_OVERLAPS_JS) == []
        narrow.screenshot(path=str(ARTIFACTS / "browser-400px.png"), full_page=True)
    finally:
        narrow.close()
