"""Bringing a photo to a bundle's framing: a similarity transform (scale, rotation, shift) and the crop.

Coordinates are continuous pixel coordinates with pixel corners at whole numbers (pixel (i, j) covers
[i, i+1) x [j, j+1)); a click on pixel (i, j) is the point (i + 0.5, j + 0.5). A similarity is kept as
two complex numbers, crop = a * photo + b, which makes fitting, inverting and composing one line each.

The least-squares fit is written here (a few lines in closed form) rather than taken from OpenCV because
``cv2.estimateAffinePartial2D`` is a robust (RANSAC / LMedS) estimator: with three points it would drop
one of them instead of balancing all three.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from editgan_core.photos import PhotoError
from editgan_core.photos.framing import LANDMARKS, Framing

Point = tuple[float, float]
MAX_SUPERSAMPLING = 8  # sub-samples per crop pixel and axis; beyond that the photo is shrunk first


class AlignmentError(PhotoError):
    """Landmarks or a box that cannot give a crop; the message is meant for the user."""


@dataclass(frozen=True)
class Alignment:
    """crop = a * photo + b (complex), for a photo of ``photo_size`` (w, h) and a square crop of side ``size``."""

    a: complex
    b: complex
    size: int
    photo_size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Photo pixels per crop pixel."""
        return 1.0 / abs(self.a)

    @property
    def angle(self) -> float:
        """Rotation of the photo into the crop, in degrees (positive = counter-clockwise on screen)."""
        return -math.degrees(math.atan2(self.a.imag, self.a.real))

    def to_crop(self, points: Sequence[Point]) -> np.ndarray:
        z = _complex(points)
        z = self.a * z + self.b
        return np.stack([z.real, z.imag], axis=1)

    def to_photo(self, points: Sequence[Point]) -> np.ndarray:
        z = (_complex(points) - self.b) / self.a
        return np.stack([z.real, z.imag], axis=1)

    def quad(self) -> np.ndarray:
        """The crop's corners in the photo (top-left, top-right, bottom-right, bottom-left)."""
        s = float(self.size)
        return self.to_photo([(0.0, 0.0), (s, 0.0), (s, s), (0.0, s)])

    def cv_matrix(self, zoom: float = 1.0) -> np.ndarray:
        """The 2x3 matrix OpenCV's warpAffine takes (pixel centres at whole numbers) for photo -> crop * zoom."""
        return _cv_matrix(self.a * zoom, self.b * zoom)

    def inverse_cv_matrix(self, zoom: float = 1.0) -> np.ndarray:
        """The warpAffine matrix for crop * zoom -> photo (pasting a crop back)."""
        return _cv_matrix(1 / (self.a * zoom), -self.b / self.a)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly record (sidecar files, history)."""
        return {"a": [self.a.real, self.a.imag], "b": [self.b.real, self.b.imag], "size": self.size,
                "photo_size": list(self.photo_size)}


def _complex(points: Sequence[Point] | np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return p[:, 0] + 1j * p[:, 1]


def _cv_matrix(a: complex, b: complex) -> np.ndarray:
    """corner-coordinate similarity -> centre-coordinate 2x3 matrix: y + 0.5 = a (x + 0.5) + b."""
    t = b + (a - 1) * (0.5 + 0.5j)
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]], dtype=np.float64)


def fit_similarity(src: Sequence[Point], dst: Sequence[Point]) -> tuple[complex, complex]:
    """Least-squares a, b with dst ~ a * src + b (no reflection)."""
    zs, zd = _complex(src), _complex(dst)
    ms, md = zs.mean(), zd.mean()
    spread = float(np.sum(np.abs(zs - ms) ** 2))
    if spread < 1e-9:
        raise AlignmentError("the points coincide: mark the two eyes and the mouth at different places")
    a = complex(np.sum((zd - md) * np.conj(zs - ms)) / spread)
    return a, complex(md - a * ms)


def _checked(points: Mapping[str, Point], photo_size: tuple[int, int]) -> dict[str, complex]:
    missing = [name for name in LANDMARKS if name not in points]
    if missing:
        raise AlignmentError(f"missing landmark(s): {', '.join(missing)} (give left_eye, right_eye and mouth)")
    w, h = photo_size
    out = {}
    for name in LANDMARKS:
        x, y = (float(v) for v in points[name])
        if not (math.isfinite(x) and math.isfinite(y) and -w <= x <= 2 * w and -h <= y <= 2 * h):
            raise AlignmentError(f"{name} ({x:.0f}, {y:.0f}) lies far outside the {w}x{h} photo")
        out[name] = complex(x, y)
    eyes = out["right_eye"] - out["left_eye"]
    if abs(eyes) < 2:
        raise AlignmentError("the two eyes are marked at the same place")
    down = (out["mouth"] - (out["left_eye"] + out["right_eye"]) / 2) / eyes  # mouth in eye-line units
    if abs(down.imag) < 0.25:
        raise AlignmentError("the mouth is marked on the line through the eyes: mark it below them")
    if down.imag < 0:  # the eyes were given the other way round (no turn mirrors a face): swap them
        out["left_eye"], out["right_eye"] = out["right_eye"], out["left_eye"]
    return out


def _ffhq(points: dict[str, complex], framing: Framing) -> tuple[complex, complex]:
    """The FFHQ recipe: a square centred below the eyes, oriented by the eye line and the eye-to-mouth vector."""
    r = framing.recipe
    eye_avg = (points["left_eye"] + points["right_eye"]) / 2
    eye_to_eye = points["right_eye"] - points["left_eye"]
    eye_to_mouth = points["mouth"] - eye_avg
    x = eye_to_eye - eye_to_mouth * 1j  # the eye line averaged with the mouth direction turned back a quarter
    x = x / abs(x) * max(abs(eye_to_eye) * r["eye_scale"], abs(eye_to_mouth) * r["mouth_scale"])
    centre = eye_avg + eye_to_mouth * r["shift"]
    half = framing.size / 2
    a = half / x  # x -> the crop's half-width along +x
    return a, half * (1 + 1j) - a * centre


def align_points(points: Mapping[str, Point], framing: Framing, photo_size: tuple[int, int]) -> Alignment:
    """The alignment that puts the photo's eyes and mouth where ``framing`` wants them."""
    if not framing.uses_landmarks:
        raise AlignmentError("this model is framed by a box: give a box around the object instead of points")
    checked = _checked(points, photo_size)
    if framing.fit == "ffhq":
        a, b = _ffhq(checked, framing)
    else:
        src = [(checked[n].real, checked[n].imag) for n in LANDMARKS]
        a, b = fit_similarity(src, [framing.target(n) for n in LANDMARKS])
    return Alignment(a, b, framing.size, photo_size)


def align_box(box: Sequence[float], framing: Framing, photo_size: tuple[int, int]) -> Alignment:
    """The square around ``box`` (x0, y0, x1, y1; any two opposite corners) plus the framing's margin."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * framing.margin)
    if side < 4:
        raise AlignmentError("the box is too small: drag across the whole object")
    a = complex(framing.size / side)
    centre = complex((x0 + x1) / 2, (y0 + y1) / 2)
    return Alignment(a, framing.size / 2 * (1 + 1j) - a * centre, framing.size, photo_size)


def centre_square(framing: Framing, photo_size: tuple[int, int]) -> Alignment:
    """The photo's centre square: what is used when no points or box are given."""
    w, h = photo_size
    a = complex(framing.size / min(w, h))  # any photo, however small (the box check is for a user's drag)
    return Alignment(a, framing.size / 2 * (1 + 1j) - a * complex(w / 2, h / 2), framing.size, photo_size)


def _border(padding: str, background: tuple[int, int, int]) -> dict[str, object]:
    if padding == "background":
        return {"borderMode": cv2.BORDER_CONSTANT, "borderValue": tuple(int(c) for c in background)}
    return {"borderMode": cv2.BORDER_REFLECT if padding == "reflect" else cv2.BORDER_REPLICATE}


def crop(pixels: np.ndarray, alignment: Alignment, padding: str = "reflect",
         background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """The aligned (size, size, 3) crop, area-averaged so a large photo does not alias."""
    a, b, size = alignment.a, alignment.b, alignment.size
    scale = alignment.scale
    if scale > MAX_SUPERSAMPLING:  # shrink the part of the photo the crop covers by a whole factor first
        shrink = int(scale // (MAX_SUPERSAMPLING / 2))
        quad = alignment.quad()
        x0, y0 = np.floor(quad.min(axis=0)).astype(int) - shrink
        x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + shrink
        x0, y0 = max(0, x0 - x0 % shrink), max(0, y0 - y0 % shrink)
        window = pixels[y0:min(y1, pixels.shape[0]), x0:min(x1, pixels.shape[1])]
        if window.size:
            hh, ww = window.shape[0] // shrink * shrink, window.shape[1] // shrink * shrink
            pixels = cv2.resize(window[:hh, :ww], (ww // shrink, hh // shrink), interpolation=cv2.INTER_AREA)
            b, a, scale = (b + a * complex(x0, y0)), a * shrink, scale / shrink  # photo -> window/shrink coordinates
    zoom = max(1, min(MAX_SUPERSAMPLING, math.ceil(scale - 1e-6)))
    big = cv2.warpAffine(pixels, _cv_matrix(a * zoom, b * zoom), (size * zoom, size * zoom),
                         flags=cv2.INTER_LINEAR, **_border(padding, background))
    if zoom == 1:
        return big
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
