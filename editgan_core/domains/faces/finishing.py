"""Output-size finishing: lighting, rounded-face falloff, blush and texture noise, weighted per class."""

from __future__ import annotations

import cv2
import numpy as np

from editgan_core.domains.faces.canvas import Canvas
from editgan_core.domains.faces.classes import SKIN
from editgan_core.domains.faces.geometry import Head

_LIGHT_W = np.array([0, 1, 1, 0.5, 0.3, 0.3, 0, 1, 1, 0.3, 1, 1, 1], np.float32)
_ROUND_W = np.array([0, 1, 0.7, 0.5, 0, 0, 0, 1, 0.6, 0, 1.2, 0.5, 0.3], np.float32) * 0.16
_NOISE_W = np.array([0.6, 0.5, 1.4, 0.8, 0.2, 0.6, 0.2, 0.5, 0.6, 0.3, 0.5, 0.5, 1.2], np.float32)
_BLUSH_RGB = np.array([18, -14, -8], np.float32)
_NOISE_TILES: dict[int, np.ndarray] = {}


def _noise_tile(n: int) -> np.ndarray:
    """A fixed (2n, 2n) texture (blotches + grain) per output size; each face crops it at its own offset."""
    if n not in _NOISE_TILES:
        rng = np.random.default_rng(20211207)
        coarse = cv2.resize(rng.standard_normal((12, 12)).astype(np.float32), (2 * n, 2 * n),
                            interpolation=cv2.INTER_CUBIC)
        _NOISE_TILES[n] = 5.0 * coarse + 2.5 * rng.standard_normal((2 * n, 2 * n)).astype(np.float32)
    return _NOISE_TILES[n]


def finish(rgb: np.ndarray, lab: np.ndarray, a: dict[str, float], h: Head, cv: Canvas) -> np.ndarray:
    """Soft light gradient + rounded-face falloff + cheek blush + texture noise, by position and class."""
    n = lab.shape[0]
    k = n / cv.size
    cx, cy = (cv.m[0, 2] + 0.5) * k, (cv.m[1, 2] + 0.5) * k
    unit = cv.unit * k
    xs = (np.arange(n, dtype=np.float32) + 0.5 - cx) / unit
    ys = (np.arange(n, dtype=np.float32) + 0.5 - cy) / unit
    light = (0.07 * a["light_x"]) * xs[None, :] + (0.07 * a["light_y"]) * ys[:, None]
    round_ = np.minimum(np.maximum((xs * xs / (h.a * h.a))[None, :] + (ys * ys - 0.35)[:, None], 0), 1.2)
    shade = 1 + np.take(_LIGHT_W, lab) * light - np.take(_ROUND_W, lab) * round_

    seed = int(a["noise_seed"])
    oy, ox = (seed // n) % n, seed % n
    noise = np.take(_NOISE_W, lab) * _noise_tile(n)[oy : oy + n, ox : ox + n]

    out = rgb.astype(np.float32)
    out *= shade[..., None]
    out += noise[..., None]
    if a["blush"] > 0.05:
        g = 0.16
        gx = np.exp(-(((xs - h.eye_x) / g) ** 2)) + np.exp(-(((xs + h.eye_x) / g) ** 2))
        gy = (a["blush"] * np.exp(-(((ys - 0.42) / (0.8 * g)) ** 2)))
        blush = (lab == SKIN) * (gy[:, None] * gx[None, :])
        out += blush[..., None] * _BLUSH_RGB
    np.clip(out, 0, 255, out=out)
    return (out + 0.5).astype(np.uint8)

