"""The drawing surface: one pose transform from face units to pixels, an RGB and a label buffer.

Both buffers are drawn ``ss`` times larger than the output with the same vertices: anti-aliased in RGB, hard in
the labels, so that after down-sampling the labels match the visible picture.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from editgan_core.domains.faces.colours import Colour

_SHIFT = 5  # fractional bits of the fixed-point vertices handed to OpenCV
_FX = 1 << _SHIFT


def _supersampling(size: int) -> int:
    """Internal scale: enough sub-pixels for smooth edges, few enough to stay fast."""
    return 4 if size <= 40 else 3 if size <= 96 else 2


def _c(rgb: Colour) -> tuple[int, int, int]:
    """Float colour -> the int triple OpenCV wants."""
    r, g, b = rgb
    return min(255, max(0, int(r + 0.5))), min(255, max(0, int(g + 0.5))), min(255, max(0, int(b + 0.5)))


class Canvas:
    """Internal-resolution RGB + label buffers; every fill goes to both with the same vertices."""

    def __init__(self, size: int, a: dict[str, float], bg: tuple[np.ndarray, np.ndarray]) -> None:
        self.ss = _supersampling(size)
        s = self.size = size * self.ss
        unit = 0.265 * s * (1 + 0.07 * a["scale"])
        theta = math.radians(6.0 * a["tilt"])
        cx, cy = s * (0.5 + 0.04 * a["pos_x"]), s * (0.47 + 0.03 * a["pos_y"])
        c, si = unit * math.cos(theta), unit * math.sin(theta)
        # face units -> OpenCV pixel coordinates (pixel centres at integers, hence the -0.5)
        self.m = np.array([[c, -si, cx - 0.5], [si, c, cy - 0.5]])
        self._lin_fx = self.m[:, :2].T * _FX
        self._off_fx = self.m[:, 2] * _FX + 0.5
        self.unit = unit
        # labels are read at pixel ss*i + ss//2, whose centre lies half a sub-pixel past the output pixel's
        # centre when ss is even: draw the label geometry that much further so the two line up
        self.lab_off = _FX // 2 if self.ss % 2 == 0 else 0
        self.rgb = _gradient(s, *bg, a["bg_angle"])
        self.lab = np.zeros((s, s), np.uint8)

    def fixed(self, pts: np.ndarray) -> np.ndarray:
        """Face units -> fixed-point int32 pixel coordinates (rounded: all are positive but the margins)."""
        return (pts @ self._lin_fx + self._off_fx).astype(np.int32)

    def px(self, length: float) -> int:
        """A length in face units as a whole number of internal pixels (line widths)."""
        return max(1, round(length * self.unit))

    def fill(self, polys: Sequence[np.ndarray], color: Colour, label: int | None = None) -> None:
        """Fill polygons: anti-aliased in RGB, hard in the label map (unless ``label`` is None)."""
        pts = [self.fixed(p) for p in polys]
        cv2.fillPoly(self.rgb, pts, _c(color), cv2.LINE_AA, _SHIFT)
        if label is not None:
            cv2.fillPoly(self.lab, [p + self.lab_off for p in pts], label, cv2.LINE_8, _SHIFT)

    def stroke(self, pts: np.ndarray, color: Colour, width: float, closed: bool = False) -> None:
        """An RGB-only line (details inside an already labelled part, e.g. nostrils, mouth line)."""
        cv2.polylines(self.rgb, [self.fixed(pts)], closed, _c(color), self.px(width),
                      cv2.LINE_AA, _SHIFT)

    def clipped(self, clip: np.ndarray, parts: Iterable[tuple[np.ndarray, Colour, int | None]]) -> None:
        """Fill ``parts`` only inside polygon ``clip`` (iris and pupil inside the eye opening)."""
        pts = self.fixed(clip)
        lo = np.maximum(pts.min(0) // _FX - 2, 0)
        hi = np.minimum(pts.max(0) // _FX + 3, self.size)
        if np.any(hi <= lo):
            return
        (x0, y0), (x1, y1) = lo, hi
        shift = np.array([x0, y0], np.int32) * _FX
        rgb, lab = self.rgb[y0:y1, x0:x1], self.lab[y0:y1, x0:x1]
        alpha = np.zeros(lab.shape, np.uint8)
        cv2.fillPoly(alpha, [pts - shift], 255, cv2.LINE_AA, _SHIFT)
        hard = np.zeros(lab.shape, np.uint8)
        cv2.fillPoly(hard, [pts - shift + self.lab_off], 1, cv2.LINE_8, _SHIFT)
        new_rgb, new_lab = rgb.copy(), lab.copy()
        for poly, color, label in parts:
            p = self.fixed(poly) - shift
            cv2.fillPoly(new_rgb, [p], _c(color), cv2.LINE_AA, _SHIFT)
            if label is not None:
                cv2.fillPoly(new_lab, [p + self.lab_off], label, cv2.LINE_8, _SHIFT)
        w = alpha[..., None].astype(np.float32) * (1 / 255)
        rgb[:] = (new_rgb * w + rgb * (1 - w) + 0.5).astype(np.uint8)
        np.copyto(lab, new_lab, where=hard.astype(bool))


def _gradient(s: int, c1: np.ndarray, c2: np.ndarray, turn: float) -> np.ndarray:
    """Two-colour linear background gradient, built on a coarse grid and upsampled (cheap)."""
    g = 32
    xs = (np.arange(g) + 0.5) / g * 2 - 1
    ang = 2 * math.pi * turn
    t = 0.5 + 0.35 * (math.cos(ang) * xs[None, :] + math.sin(ang) * xs[:, None])
    small = (c1 + t[..., None] * (c2 - c1) + 0.5).astype(np.uint8)
    return cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)

