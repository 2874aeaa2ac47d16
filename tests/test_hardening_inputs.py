"""Every input is bounded before work is done on it, and the label snapping stays lean in memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from editgan_core.pipeline import InputError
from webapp import labels as lab

PALETTE = np.array([(0, 0, 0), (230, 190, 160), (120, 60, 40), (200, 40, 60), (60, 20, 20), (250, 250, 250)],
                   np.uint8)


def _layer(side: int, color) -> np.ndarray:
    layer = np.zeros((side, side, 4), np.uint8)
    layer[side // 4: side // 2, side // 4: side // 2] = (*color, 255)
    return layer


def test_painted_maps_beyond_the_models_limit_are_refused_naming_it():
    base = np.zeros((32, 32), np.uint8)
    assert lab.paint_limit(32) == lab.MIN_PAINT_LIMIT and lab.paint_limit(1024) == 2048
    ok = lab.read_painting({"background": None, "layers": [_layer(512, PALETTE[3])], "composite": None}, base, PALETTE)
    assert ok.changed_pixels > 0
    with pytest.raises(InputError, match=r"513x513 pixels; the limit is 512x512"):
        lab.read_painting({"background": None, "layers": [_layer(513, PALETTE[3])], "composite": None}, base, PALETTE)
    with pytest.raises(InputError, match="limit is 512x512"):
        lab.read_painting(np.zeros((4, 9000, 3), np.uint8), base, PALETTE)
    with pytest.raises(InputError, match="5 layers; the limit is 4"):
        lab.read_painting({"layers": [_layer(64, PALETTE[3])] * 5, "composite": None}, base, PALETTE)
    for odd in (np.zeros((8, 8, 7), np.uint8), np.zeros(10, np.uint8), np.array([["a"]])):
        with pytest.raises(InputError, match="not a picture"):
            lab.read_painting(odd, base, PALETTE)


def test_snapping_memory_grows_by_bytes_per_pixel_not_by_classes():
    """The old snapping held (pixels, classes, 3) floats: 60 classes x 12 bytes = 720 bytes a pixel here."""
    base = np.zeros((256, 256), np.uint8)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (512, 512, 4), dtype=np.uint8)  # every pixel a colour of its own: the worst case
    noise[..., 3] = 255
    palette = rng.integers(0, 256, (60, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        result = lab.read_painting({"background": None, "layers": [noise], "composite": None}, base, palette)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.labels.shape == (256, 256)
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB for a {noise.shape[0]}² map"


def test_chunked_snapping_matches_a_direct_nearest_colour_search(monkeypatch):
    monkeypatch.setattr(lab, "PIXEL_CHUNK", 1000)
    monkeypatch.setattr(lab, "SNAP_CHUNK", 7)
    colors = np.random.default_rng(1).integers(0, 256, (5000, 3), dtype=np.uint8)
    ids, ok = lab.snap_colors(colors, PALETTE)
    d = np.linalg.norm(colors[:, None].astype(float) - PALETTE[None].astype(float), axis=2)
    assert np.array_equal(ids, d.argmin(axis=1)) and np.array_equal(ok, d.min(axis=1) <= lab.SNAP_DISTANCE)
