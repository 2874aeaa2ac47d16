"""Take the README screenshot: the studio after a painted edit, with a vector active.

    python -m webapp.screenshot [--bundle checkpoints/faces64] [--out docs/screenshot.png]

Drives Debian's chromium through Playwright (``apt-get install chromium``; no browser download).
Without a bundle it uses a tiny random test model, whose pictures are colour blobs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from editgan_core.cli_common import setup_logging
from webapp.ui import build_demo, bundle_paths, launch_kwargs

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


def capture(url: str, out: Path, paint_class: int, steps: int, width: int = 1400) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#current img", timeout=60_000)
        time.sleep(3.5)  # the paint canvas settles its size first
        page.click("#painter button[aria-label=Color]")
        page.click(f"#painter menu.swatch button.color >> nth={paint_class}")
        canvas = page.query_selector_all("#painter canvas")[0]
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 80, cy - 40)
        page.mouse.down()
        for i in range(1, 5):
            page.mouse.move(cx - 80 + 40 * i, cy - 40 + 8 * i)
        page.mouse.up()
        time.sleep(0.5)
        page.get_by_role("button", name="Check painting").click()
        page.wait_for_function("() => document.querySelector('#paint-info').innerText.includes('pixels changed')")
        page.fill("#edit-steps input[type=number]", str(steps))
        page.click("#edit-btn")
        page.wait_for_function("() => document.querySelector('#edit-status').innerText.includes('Done in')",
                               timeout=600_000)
        page.get_by_label("Vector name").fill("my first edit")
        page.get_by_role("button", name="Save as vector").click()
        time.sleep(1.5)
        page.click("#vector-gallery button.thumbnail-item >> nth=0")
        page.wait_for_selector("#strength-0 input[type=range]", state="visible")
        time.sleep(2)
        for _ in range(12):  # scroll through once so lazily loaded pictures are in
            page.mouse.wheel(0, 500)
            time.sleep(0.15)
        page.evaluate("window.scrollTo(0, 0)")
        time.sleep(1)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def shrink(path: Path) -> None:
    """256-colour PNG: a third of the size, indistinguishable for a page of flat UI colours."""
    from PIL import Image

    picture = Image.open(path).convert("RGB")
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="model bundle (default: the first in checkpoints/)")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    parser.add_argument("--paint-class", type=int, default=3, help="class id to paint with (3 = eyebrows)")
    parser.add_argument("--steps", type=int, default=30, help="optimisation steps of the edit")
    setup_logging()
    args = parser.parse_args(argv)
    paths = bundle_paths(args.bundle)
    with tempfile.TemporaryDirectory() as tmp:
        if not paths:
            from editgan_core.testing import make_tiny_bundle

            paths = [make_tiny_bundle(Path(tmp) / "tiny")]
        demo = build_demo(paths[:1])
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
        try:
            capture(url, args.out, args.paint_class, args.steps)
            shrink(args.out)
        finally:
            demo.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
