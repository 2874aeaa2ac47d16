"""Outlines in face units (head half-height = 1, origin at the head centre, y down) and the head's shape."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_UNIT: dict[tuple[int, bool], np.ndarray] = {}


def lin(lo: float, hi: float, n: int, endpoint: bool = True) -> np.ndarray:
    """``np.linspace`` from a cached unit ramp (linspace itself dominates small-array time)."""
    key = (n, endpoint)
    if key not in _UNIT:
        _UNIT[key] = np.linspace(0.0, 1.0, n, endpoint=endpoint)
    return lo + (hi - lo) * _UNIT[key]


def clamp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``np.clip`` without its per-call overhead on tiny arrays."""
    return np.minimum(np.maximum(x, lo), hi)


def xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, 2) points from coordinate arrays."""
    p = np.empty((len(x), 2))
    p[:, 0], p[:, 1] = x, y
    return p


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, t0: float = 0.0,
             t1: float = 2 * math.pi) -> np.ndarray:
    """(n, 2) points on an ellipse arc; the full turn omits the duplicate end point."""
    t = lin(t0, t1, n, endpoint=abs(t1 - t0) < 2 * math.pi - 1e-9)
    return xy(cx + rx * np.cos(t), cy + ry * np.sin(t))


def poly(x: np.ndarray, y_top: np.ndarray, y_bottom: np.ndarray) -> np.ndarray:
    """Closed outline between two curves sampled at the same x: top left->right, bottom back."""
    return xy(np.concatenate([x, x[::-1]]), np.concatenate([y_top, y_bottom[::-1]]))


@dataclass(frozen=True)
class Head:
    """Identity geometry shared by several parts (depends on no editable attribute)."""

    a: float  # half-width
    k: float  # jaw taper
    eye_x: float
    eye_y: float
    eye_w: float
    eye_up: float  # upper-lid height above the eye line when fully open
    eye_down: float  # lower-lid depth below it
    temple_y: float

    def half_width(self, y: np.ndarray | float) -> np.ndarray | float:
        """Half-width of the face outline at height y."""
        y = clamp(y, -1.0, 1.0)
        return self.a * np.sqrt(1 - y * y) * (1 - self.k * np.maximum(y, 0.0) ** 2)

    def outline(self, n: int = 64) -> np.ndarray:
        """Closed face outline: an ellipse whose lower half narrows towards the chin."""
        t = lin(0, 2 * math.pi, n, endpoint=False)
        s = np.sin(t)
        return xy(self.a * np.cos(t) * (1 - self.k * np.maximum(s, 0) ** 2), s)


def head_geometry(a: dict[str, float]) -> Head:
    """Big stylised eyes (about a quarter of the face width each) so gaze and lids read at 64 px."""
    ew = 0.20 + 0.05 * a["eye_size"]
    return Head(a=0.70 + 0.10 * a["face_width"], k=0.12 + 0.30 * a["jaw"],
                 eye_x=0.33 + 0.05 * a["eye_spacing"], eye_y=0.08, eye_w=ew, eye_up=0.78 * ew,
                 eye_down=0.42 * ew, temple_y=-0.16)

