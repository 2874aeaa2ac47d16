"""Procedural cartoon faces with exact part labels: the offline demo domain.

Why a drawn domain: EditGAN needs images together with their part segmentation, and the editing
vectors are learnt from pairs "same face, one attribute changed". A renderer gives unlimited such
pairs, pixel-exact labels and the ground-truth attribute values, with no download.

How it works:
- ``sample_attributes(seed)`` draws *every* random number (shape, appearance, pose, texture-noise
  seed) from the seed; ``render(attrs, size)`` is a pure function of that dict. Overriding one
  attribute therefore changes only the pixels of the parts that attribute moves.
- Each part is a polygon in *face units* (head half-height = 1, origin at the head centre, y down),
  mapped to pixels by one affine pose transform and filled with OpenCV in painter's order, into
  the RGB canvas (anti-aliased) and into the label canvas (hard) with the same vertices.
- Both canvases are drawn ``ss`` times larger than the output; RGB is box-filtered down
  (``INTER_AREA``), labels are sampled at each output pixel's centre, so they stay hard and match
  the visible picture. Lighting, blush and texture noise are then applied at the output size,
  weighted per class through small look-up tables.

``python -m editgan_core.domains.faces --grid out.png | --sweep out.png`` for a look; its speed is
``python -m editgan_core.eval.render_speed``.
"""

from __future__ import annotations

import argparse
import colorsys
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# --------------------------------------------------------------------------------------------------
# Part classes


@dataclass(frozen=True)
class PartClass:
    """One segmentation class: stable id, name and the RGB colour the UI paints it with."""

    id: int
    name: str
    color: tuple[int, int, int]


CLASSES: list[PartClass] = [
    PartClass(0, "background", (0, 0, 0)),
    PartClass(1, "skin", (240, 180, 130)),
    PartClass(2, "hair", (130, 70, 20)),
    PartClass(3, "eyebrows", (230, 230, 40)),
    PartClass(4, "eye_whites", (255, 255, 255)),
    PartClass(5, "irises", (40, 120, 255)),
    PartClass(6, "pupils", (130, 0, 200)),
    PartClass(7, "nose", (0, 200, 120)),
    PartClass(8, "lips", (220, 30, 60)),
    PartClass(9, "mouth_interior", (100, 0, 30)),
    PartClass(10, "ears", (255, 120, 200)),
    PartClass(11, "neck", (160, 120, 80)),
    PartClass(12, "clothes", (0, 160, 200)),
]
PALETTE: np.ndarray = np.array([c.color for c in CLASSES], dtype=np.uint8)
CLASS_IDS: dict[str, int] = {c.name: c.id for c in CLASSES}
NUM_CLASSES = len(CLASSES)

BACKGROUND, SKIN, HAIR, EYEBROWS, EYE_WHITES, IRISES, PUPILS = range(7)
NOSE, LIPS, MOUTH_INTERIOR, EARS, NECK, CLOTHES = range(7, 13)

# --------------------------------------------------------------------------------------------------
# Attributes


@dataclass(frozen=True)
class AttributeSpec:
    """A drawn value: range, meaning and how ``sample_attributes`` distributes it.

    ``dist``: "uniform"; "centred" (triangular, peak mid-range); "high" (density rising towards
    ``high``); "integer" (uniform integers in [low, high)). With probability ``p_low`` the value is
    exactly ``low`` (e.g. a closed mouth, no fringe), so both states are common.
    """

    name: str
    low: float
    high: float
    doc: str
    editable: bool = False
    dist: str = "uniform"
    p_low: float = 0.0


# Order = slot in the random stream: append new attributes at the end so old seeds keep their faces.
ATTRIBUTE_SPECS: tuple[AttributeSpec, ...] = (
    # editable shape attributes (the ones editing vectors and the attribute classifier target)
    AttributeSpec("smile", -1, 1, "mouth-corner curvature: -1 frown, 0 straight, 1 broad smile", True),
    AttributeSpec("mouth_open", 0, 1, "lip gap: 0 closed, 1 wide open (teeth + dark interior)", True,
                  p_low=0.45),
    AttributeSpec("eye_open", 0, 1, "upper-lid position: 0 closed (lash line only), 1 wide open", True,
                  dist="high"),
    AttributeSpec("pupil_size", 0, 1, "pupil radius: 0 = 0.22, 1 = 0.78 of the iris radius", True),
    AttributeSpec("gaze_x", -1, 1, "iris position: -1 looks to the image's left, 1 to its right", True,
                  dist="centred"),
    AttributeSpec("gaze_y", -1, 1, "iris position: -1 looks up, 1 looks down", True, dist="centred"),
    AttributeSpec("eyebrow_height", 0, 1, "brow gap above the eye: 0 low/close, 1 raised", True),
    AttributeSpec("hair_volume", 0, 1, "hair thickness around the head: 0 close-cropped, 1 big", True),
    AttributeSpec("fringe", 0, 1, "bangs over the forehead: 0 none, 1 down to the brows", True, p_low=0.4),
    AttributeSpec("nose_size", 0, 1, "nose scale: 0 small, 1 big", True),
    AttributeSpec("ear_size", 0, 1, "ear scale: 0 small, 1 big", True),
    # identity shape
    AttributeSpec("face_width", 0, 1, "head half-width 0.70..0.80 (head half-height = 1)"),
    AttributeSpec("jaw", 0, 1, "jaw taper: 0 round face, 1 narrow chin"),
    AttributeSpec("eye_size", 0, 1, "eye width: 0 small, 1 large"),
    AttributeSpec("eye_spacing", 0, 1, "distance between the eyes: 0 close, 1 wide"),
    AttributeSpec("mouth_width", 0, 1, "mouth width: 0 narrow, 1 wide"),
    AttributeSpec("lip_thickness", 0, 1, "lip thickness: 0 thin, 1 full"),
    AttributeSpec("brow_thickness", 0, 1, "eyebrow thickness: 0 thin, 1 bushy"),
    AttributeSpec("brow_tilt", -1, 1, "eyebrow slant: -1 outer ends up, 1 outer ends down"),
    AttributeSpec("hair_length", 0, 1, "hair at the sides: 0 ends at the ears, 1 reaches the shoulders"),
    AttributeSpec("hairline", 0, 1, "forehead height without fringe: 0 low hairline, 1 high"),
    AttributeSpec("hair_part", -1, 1, "side of the parting: -1 image left, 1 image right"),
    # appearance
    AttributeSpec("skin_tone", 0, 1, "skin colour ramp: 0 very light .. 1 dark"),
    AttributeSpec("hair_tone", 0, 1, "hair colour ramp: black, browns, auburn, ginger, blond, platinum"),
    AttributeSpec("iris_tone", 0, 1, "iris colour ramp: dark brown, brown, hazel, green, teal, blue, grey"),
    AttributeSpec("lip_tint", 0, 1, "lip colour: 0 close to skin, 1 rosy red"),
    AttributeSpec("blush", 0, 1, "pink tint on the cheeks: 0 none, 1 strong"),
    AttributeSpec("bg_hue", 0, 1, "background hue (HSV)"),
    AttributeSpec("bg_hue_shift", -1, 1, "hue offset of the second gradient colour"),
    AttributeSpec("bg_saturation", 0, 1, "background saturation 0.12..0.55"),
    AttributeSpec("bg_value", 0, 1, "background brightness 0.45..0.95"),
    AttributeSpec("bg_angle", 0, 1, "direction of the background gradient (fraction of a full turn)"),
    AttributeSpec("clothes_hue", 0, 1, "clothes hue (HSV)"),
    AttributeSpec("clothes_saturation", 0, 1, "clothes saturation 0.15..0.8"),
    AttributeSpec("clothes_value", 0, 1, "clothes brightness 0.3..0.9"),
    AttributeSpec("light_x", -1, 1, "light direction: -1 from the image left, 1 from the right"),
    AttributeSpec("light_y", -1, 1, "light direction: -1 from above, 1 from below", dist="centred"),
    # pose
    AttributeSpec("pos_x", -1, 1, "head centre offset: +-1 = +-4% of the image width", dist="centred"),
    AttributeSpec("pos_y", -1, 1, "head centre offset: +-1 = +-3% of the image height", dist="centred"),
    AttributeSpec("scale", -1, 1, "head size factor 1 +- 0.07", dist="centred"),
    AttributeSpec("tilt", -1, 1, "in-plane head rotation +-6 degrees (positive = clockwise)", dist="centred"),
    # texture
    AttributeSpec("noise_seed", 0, 2**31, "seed of the texture noise (an integer)", dist="integer"),
)
SPECS: dict[str, AttributeSpec] = {s.name: s for s in ATTRIBUTE_SPECS}
ATTRIBUTE_RANGES: dict[str, tuple[float, float]] = {
    s.name: (float(s.low), float(s.high)) for s in ATTRIBUTE_SPECS if s.editable
}

# Part classes each editable attribute redraws (an edit group): pixels of these classes, in the picture before
# or after the change, slightly dilated, contain every pixel the attribute changes.
EDIT_CLASSES: dict[str, tuple[int, ...]] = {
    "smile": (LIPS, MOUTH_INTERIOR),
    "mouth_open": (LIPS, MOUTH_INTERIOR),
    "eye_open": (EYE_WHITES, IRISES, PUPILS),
    "pupil_size": (IRISES, PUPILS),
    "gaze_x": (EYE_WHITES, IRISES, PUPILS),
    "gaze_y": (EYE_WHITES, IRISES, PUPILS),
    "eyebrow_height": (EYEBROWS,),
    "hair_volume": (HAIR,),
    "fringe": (HAIR,),
    "nose_size": (NOSE,),
    "ear_size": (EARS,),
}


def _draw_value(spec: AttributeSpec, u: np.ndarray) -> float:
    """Map three uniforms to one attribute value following ``spec.dist``."""
    if spec.dist == "integer":
        return float(math.floor(spec.low + u[1] * (spec.high - spec.low)))
    if spec.p_low and u[0] < spec.p_low:
        return float(spec.low)
    t = {"uniform": u[1], "centred": 0.5 * (u[1] + u[2]), "high": max(u[1], u[2])}[spec.dist]
    return float(spec.low + t * (spec.high - spec.low))


def sample_attributes(seed: int) -> dict[str, float]:
    """Every random choice of one face, from the seed alone (three uniforms per attribute slot)."""
    u = np.random.default_rng(seed).random((len(ATTRIBUTE_SPECS), 3))
    return {spec.name: _draw_value(spec, u[i]) for i, spec in enumerate(ATTRIBUTE_SPECS)}


def _checked(attrs: dict[str, float]) -> dict[str, float]:
    """Complete, known and clamped attributes (editing tools may push values past the range)."""
    unknown = set(attrs) - set(SPECS)
    if unknown:
        raise KeyError(f"unknown face attributes: {sorted(unknown)}")
    missing = [name for name in SPECS if name not in attrs]
    if missing:
        raise KeyError(f"missing face attributes {missing}; start from sample_attributes(seed)")
    out = {}
    for name, spec in SPECS.items():
        value = min(max(float(attrs[name]), spec.low), spec.high)
        out[name] = float(math.floor(value)) if spec.dist == "integer" else value
    return out


# --------------------------------------------------------------------------------------------------
# Colours

_SKIN_RAMP = np.array([[255, 226, 204], [242, 196, 162], [226, 172, 128], [198, 136, 94],
                       [150, 96, 64], [98, 62, 44]], np.float64)
_HAIR_RAMP = np.array([[28, 22, 22], [62, 40, 28], [106, 66, 38], [142, 58, 30], [196, 104, 46],
                       [214, 172, 96], [232, 214, 168]], np.float64)
_IRIS_RAMP = np.array([[74, 42, 22], [122, 72, 30], [138, 110, 48], [70, 132, 68], [52, 132, 140],
                       [58, 104, 192], [124, 140, 160]], np.float64)
_EYE_WHITE = (246, 246, 242)
_PUPIL = (18, 12, 14)
_MOUTH_DARK = (96, 26, 34)
_TEETH = (246, 242, 232)


def _ramp(ramp: np.ndarray, t: float) -> np.ndarray:
    """Piecewise-linear colour ramp, t in [0, 1]."""
    x = t * (len(ramp) - 1)
    i = min(int(x), len(ramp) - 2)
    return ramp[i] + (x - i) * (ramp[i + 1] - ramp[i])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0, 1] (hue wraps) -> RGB in [0, 255]."""
    return 255.0 * np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


_Colour = np.ndarray | tuple[float, float, float]


def _c(rgb: _Colour) -> tuple[int, int, int]:
    """Float colour -> the int triple OpenCV wants."""
    r, g, b = rgb
    return min(255, max(0, int(r + 0.5))), min(255, max(0, int(g + 0.5))), min(255, max(0, int(b + 0.5)))


@dataclass(frozen=True)
class _Colours:
    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    clothes: np.ndarray
    bg: tuple[np.ndarray, np.ndarray]


def _colours(a: dict[str, float]) -> _Colours:
    """All flat colours of one face; lips mix a darkened skin with rose so they read on any skin tone."""
    skin = _ramp(_SKIN_RAMP, a["skin_tone"])
    rose = np.array([196.0, 74.0, 86.0]) * (0.55 + 0.45 * skin / 255)
    lips = (1 - a["lip_tint"]) * skin * np.array([0.86, 0.66, 0.64]) + a["lip_tint"] * rose
    bg1 = _hsv(a["bg_hue"], 0.12 + 0.43 * a["bg_saturation"], 0.45 + 0.5 * a["bg_value"])
    bg2 = _hsv(a["bg_hue"] + 0.15 * a["bg_hue_shift"], 0.12 + 0.43 * a["bg_saturation"],
               0.35 + 0.5 * a["bg_value"])
    clothes = _hsv(a["clothes_hue"], 0.15 + 0.65 * a["clothes_saturation"], 0.3 + 0.6 * a["clothes_value"])
    return _Colours(skin, _ramp(_HAIR_RAMP, a["hair_tone"]), _ramp(_IRIS_RAMP, a["iris_tone"]), lips,
                    clothes, (bg1, bg2))


# --------------------------------------------------------------------------------------------------
# Geometry helpers (face units)

_SHIFT = 5  # fractional bits of the fixed-point vertices handed to OpenCV
_FX = 1 << _SHIFT


_UNIT: dict[tuple[int, bool], np.ndarray] = {}


def _lin(lo: float, hi: float, n: int, endpoint: bool = True) -> np.ndarray:
    """``np.linspace`` from a cached unit ramp (linspace itself dominates small-array time)."""
    key = (n, endpoint)
    if key not in _UNIT:
        _UNIT[key] = np.linspace(0.0, 1.0, n, endpoint=endpoint)
    return lo + (hi - lo) * _UNIT[key]


def _clamp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``np.clip`` without its per-call overhead on tiny arrays."""
    return np.minimum(np.maximum(x, lo), hi)


def _xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, 2) points from coordinate arrays."""
    p = np.empty((len(x), 2))
    p[:, 0], p[:, 1] = x, y
    return p


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, t0: float = 0.0,
             t1: float = 2 * math.pi) -> np.ndarray:
    """(n, 2) points on an ellipse arc; the full turn omits the duplicate end point."""
    t = _lin(t0, t1, n, endpoint=abs(t1 - t0) < 2 * math.pi - 1e-9)
    return _xy(cx + rx * np.cos(t), cy + ry * np.sin(t))


def _poly(x: np.ndarray, y_top: np.ndarray, y_bottom: np.ndarray) -> np.ndarray:
    """Closed outline between two curves sampled at the same x: top left->right, bottom back."""
    return _xy(np.concatenate([x, x[::-1]]), np.concatenate([y_top, y_bottom[::-1]]))


def _supersampling(size: int) -> int:
    """Internal scale: enough sub-pixels for smooth edges, few enough to stay fast."""
    return 4 if size <= 40 else 3 if size <= 96 else 2


@dataclass(frozen=True)
class _Head:
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
        y = _clamp(y, -1.0, 1.0)
        return self.a * np.sqrt(1 - y * y) * (1 - self.k * np.maximum(y, 0.0) ** 2)

    def outline(self, n: int = 64) -> np.ndarray:
        """Closed face outline: an ellipse whose lower half narrows towards the chin."""
        t = _lin(0, 2 * math.pi, n, endpoint=False)
        s = np.sin(t)
        return _xy(self.a * np.cos(t) * (1 - self.k * np.maximum(s, 0) ** 2), s)


def _head(a: dict[str, float]) -> _Head:
    """Big stylised eyes (about a quarter of the face width each) so gaze and lids read at 64 px."""
    ew = 0.20 + 0.05 * a["eye_size"]
    return _Head(a=0.70 + 0.10 * a["face_width"], k=0.12 + 0.30 * a["jaw"],
                 eye_x=0.33 + 0.05 * a["eye_spacing"], eye_y=0.08, eye_w=ew, eye_up=0.78 * ew,
                 eye_down=0.42 * ew, temple_y=-0.16)


# --------------------------------------------------------------------------------------------------
# Canvas: one pose transform, an RGB and a label buffer


class _Canvas:
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

    def fill(self, polys: Sequence[np.ndarray], color: _Colour, label: int | None = None) -> None:
        """Fill polygons: anti-aliased in RGB, hard in the label map (unless ``label`` is None)."""
        pts = [self.fixed(p) for p in polys]
        cv2.fillPoly(self.rgb, pts, _c(color), cv2.LINE_AA, _SHIFT)
        if label is not None:
            cv2.fillPoly(self.lab, [p + self.lab_off for p in pts], label, cv2.LINE_8, _SHIFT)

    def stroke(self, pts: np.ndarray, color: _Colour, width: float, closed: bool = False) -> None:
        """An RGB-only line (details inside an already labelled part, e.g. nostrils, mouth line)."""
        cv2.polylines(self.rgb, [self.fixed(pts)], closed, _c(color), self.px(width),
                      cv2.LINE_AA, _SHIFT)

    def clipped(self, clip: np.ndarray, parts: Iterable[tuple[np.ndarray, _Colour, int | None]]) -> None:
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


# --------------------------------------------------------------------------------------------------
# Parts, in painter's order


def _hair_outer(a: dict[str, float], h: _Head) -> tuple[float, float, float]:
    """Centre y, half-width and half-height of the ellipse the hair silhouette follows."""
    v = a["hair_volume"]
    return -0.10, h.a + 0.08 + 0.24 * v, 1.05 + 0.24 * v


def _draw_back_hair(cv: _Canvas, a: dict[str, float], h: _Head, col: _Colours) -> None:
    """Hair behind the head: top arc plus side curtains down to ``hair_length``."""
    cy, rx, ry = _hair_outer(a, h)
    top = _ellipse(0, cy, rx, ry, 36, math.pi, 2 * math.pi)
    bottom = 0.25 + 1.15 * a["hair_length"]
    side = rx * (0.96 + 0.04 * a["hair_volume"])
    r = min(0.25, 0.5 * (bottom - cy))
    right = np.array([[side, cy + 0.3 * (bottom - cy)], [side * 0.98, bottom - r],
                      [side - 0.3 * r, bottom - 0.15 * r], [side - r, bottom]])
    left = right[::-1] * np.array([-1, 1])
    cv.fill([np.concatenate([top, right, left])], col.hair * 0.8, HAIR)


def _draw_clothes(cv: _Canvas, col: _Colours) -> None:
    """Shoulders: the upper half of a squarish superellipse reaching past the image bottom."""
    t = _lin(math.pi, 2 * math.pi, 33)
    c, s = np.cos(t), np.sin(t)
    p = 2.0 / 2.8
    x = 1.65 * np.sign(c) * np.abs(c) ** p
    y = 2.85 + 1.40 * np.sign(s) * np.abs(s) ** p
    cv.fill([np.concatenate([_xy(x, y), [[1.65, 4.0], [-1.65, 4.0]]])], col.clothes, CLOTHES)


def _draw_neck(cv: _Canvas, h: _Head, col: _Colours) -> None:
    """Neck with a round neckline cut into the clothes and a shadow under the jaw."""
    nw = 0.27 + 0.5 * (h.a - 0.70)
    x = _lin(nw * 1.55, -nw * 1.55, 17)
    neckline = _xy(x, 1.52 + 0.16 * (1 - (x / (nw * 1.55)) ** 2))
    body = [[-nw, 0.35], [nw, 0.35], [nw, 1.22], [nw * 1.2, 1.40]]
    cv.fill([np.concatenate([body, neckline, [[-nw * 1.2, 1.40], [-nw, 1.22]]])], col.skin * 0.9, NECK)
    jaw = h.outline(64)
    jaw = jaw[jaw[:, 1] >= 0] + np.array([0.0, 0.10])
    jaw[:, 0] = _clamp(jaw[:, 0], -nw, nw)
    cv.fill([jaw], col.skin * 0.72, NECK)
    cv.stroke(neckline, col.clothes * 0.65, 0.035)


def _draw_ears(cv: _Canvas, a: dict[str, float], h: _Head, col: _Colours) -> None:
    """Ears at the sides, partly hidden behind the face; an inner fold line for depth."""
    e = a["ear_size"]
    rx, ry, y = 0.08 + 0.12 * e, 0.15 + 0.16 * e, 0.14
    for side in (-1, 1):
        x = side * (float(h.half_width(y)) + 0.3 * rx)
        cv.fill([_ellipse(x, y, rx, ry, 24)], col.skin * 0.95, EARS)
        t0 = -0.55 * math.pi if side > 0 else 1.55 * math.pi
        t1 = t0 + side * 0.95 * math.pi
        fold = _ellipse(x + side * 0.12 * rx, y + 0.05 * ry, 0.5 * rx, 0.6 * ry, 10, t0, t1)
        cv.stroke(fold, col.skin * 0.7, 0.025)


def _draw_face(cv: _Canvas, h: _Head, col: _Colours) -> None:
    """The skin of the head; it hides the inner halves of the ears and the top of the neck."""
    cv.fill([h.outline(64)], col.skin, SKIN)


def _draw_nose(cv: _Canvas, a: dict[str, float], col: _Colours) -> None:
    """A rounded drop shape, darker than skin, with a nostril line and a tip highlight."""
    s = 0.55 + 1.1 * a["nose_size"]
    y = 0.38
    rx, ry = 0.08 * s, 0.055 * s
    bulb = _ellipse(0, y, rx, ry, 20, -0.15 * math.pi, 1.15 * math.pi)
    bridge = np.array([[-0.5 * rx, y - 2.4 * ry], [0.0, y - 2.9 * ry], [0.5 * rx, y - 2.4 * ry]])
    cv.fill([np.concatenate([bulb, bridge])], col.skin * 0.82, NOSE)
    nostrils = _ellipse(0, y - 0.1 * ry, 0.85 * rx, ry, 12, 0.1 * math.pi, 0.9 * math.pi)
    cv.stroke(nostrils, col.skin * 0.5, 0.025)
    cv.fill([_ellipse(-0.3 * rx, y - 0.45 * ry, 0.22 * rx, 0.2 * ry, 10)], np.minimum(col.skin * 1.1, 255))


def _draw_mouth(cv: _Canvas, a: dict[str, float], col: _Colours) -> None:
    """Lips around a mouth line bent by ``smile``; ``mouth_open`` parts them to show teeth + interior."""
    smile, m = a["smile"], a["mouth_open"]
    half = (0.20 + 0.08 * a["mouth_width"]) * (1 + 0.10 * max(smile, 0.0))
    x = _lin(-half, half, 25)
    d = x / half
    bend = 0.15 * smile
    mid = 0.66 - bend * (d * d - 0.4)
    f = np.sqrt(np.maximum(1 - d * d, 0))
    gap = 0.26 * m
    inner_top, inner_bottom = mid - 0.28 * gap * f**1.2, mid + 0.72 * gap * f**1.2
    tu, tl = 0.035 + 0.02 * a["lip_thickness"], 0.045 + 0.03 * a["lip_thickness"]
    bow = 1 - 0.35 * np.exp(-((d / 0.14) ** 2))
    top = inner_top - tu * f**0.8 * bow
    bottom = inner_bottom + tl * f**0.8
    cv.fill([_poly(x, top, bottom)], col.lips, LIPS)
    cv.fill([_poly(x, top, inner_top + 0.25 * tu * f)], col.lips * 0.82)  # upper lip in shadow
    if gap * cv.unit > 0.35:  # open: dark interior, upper teeth hanging from the top edge
        cv.fill([_poly(x, inner_top, inner_bottom)], _MOUTH_DARK, MOUTH_INTERIOR)
        cv.fill([_poly(x, inner_top, np.minimum(inner_top + 0.05 * f, inner_bottom))], _TEETH, MOUTH_INTERIOR)
    else:
        cv.stroke(_xy(x[1:-1], mid[1:-1]), col.lips * 0.5, 0.022)
    if abs(smile) > 0.2:  # creases just outside the corners make the curvature readable when small
        k = (abs(smile) - 0.2) / 0.8
        crease = col.skin * (1 - 0.3 * k)
        for side in (-1, 1):
            cx, cy = side * (half + 0.03), mid[0] - 0.01 * math.copysign(1, smile)
            arc = _xy(cx + side * np.array([0.0, 0.018, 0.0]), cy + 0.05 * np.array([-1.0, 0.0, 1.0]))
            cv.stroke(arc, crease, 0.02)


def _lid_profile(x: np.ndarray, cx: float, w: float) -> np.ndarray:
    """Lid height profile across the eye: 1 in the middle, 0 at the corners (almond shape)."""
    d = _clamp((x - cx) / w, -1, 1)
    return (1 - d * d) ** 0.7


def _draw_eyes(cv: _Canvas, a: dict[str, float], h: _Head, col: _Colours) -> None:
    """Eye opening between the lids; iris/pupil clipped to it; a lash line along the upper lid."""
    w, up, down = h.eye_w, h.eye_up, h.eye_down
    r_iris = 0.43 * (up + down)
    r_pupil = r_iris * (0.22 + 0.56 * a["pupil_size"])
    lash_col = np.minimum(col.hair * 0.35, 40) + 12
    for side in (-1, 1):
        ex, ey = side * h.eye_x, h.eye_y
        x = _lin(ex - w, ex + w, 25)
        c = _lid_profile(x, ex, w)
        lower = ey + down * c
        upper = lower - a["eye_open"] * (up + down) * c
        if a["eye_open"] * (up + down) * cv.unit > 0.3:
            opening = _poly(x, upper, lower)
            cv.fill([opening], _EYE_WHITE, EYE_WHITES)
            ix = ex + a["gaze_x"] * (w - r_iris) * 0.95
            iy = ey - 0.5 * (up - down) + a["gaze_y"] * 0.6 * r_iris
            glint = 0.2 * r_iris
            cv.clipped(opening, [
                (_ellipse(ix, iy, r_iris, r_iris, 28), col.iris * 0.55, IRISES),
                (_ellipse(ix, iy, 0.8 * r_iris, 0.8 * r_iris, 28), col.iris, None),
                (_ellipse(ix, iy, r_pupil, r_pupil, 20), _PUPIL, PUPILS),
                (_ellipse(ix - 0.38 * r_iris, iy - 0.38 * r_iris, glint, glint, 12), (250, 250, 250), None),
            ])
        # lash line: thicker towards the outer corner, with a small wing
        outer = (x - ex) * side / w  # -1 inner corner .. 1 outer corner
        t = 0.022 + 0.03 * (outer + 1) / 2
        lash = np.concatenate([_xy(x, upper - t)[::side], [[ex + side * 1.12 * w, ey - 0.03]],
                               _xy(x, upper + 0.3 * t)[::-side]])
        cv.fill([lash], lash_col, SKIN)


def _draw_brows(cv: _Canvas, a: dict[str, float], h: _Head, col: _Colours) -> None:
    """Arched brows whose gap above the eye follows ``eyebrow_height``."""
    hgt = a["eyebrow_height"]
    thick = 0.05 + 0.04 * a["brow_thickness"]
    brow_col = np.minimum(col.hair * 0.65, 130) + 8
    for side in (-1, 1):
        ex = side * h.eye_x
        cy = h.eye_y - h.eye_up - 0.07 - 0.20 * hgt
        x = _lin(ex - 1.1 * h.eye_w, ex + 1.15 * h.eye_w, 17)
        d = (x - ex) / (1.12 * h.eye_w)
        outer = d * side  # -1 inner end .. 1 outer end
        y = cy - (0.05 + 0.03 * hgt) * (1 - d * d) + 0.05 * a["brow_tilt"] * outer
        t = thick * (1 - 0.45 * (outer + 1) / 2) * np.sqrt(_clamp(1.02 - outer**8, 0.0, 1.0))
        cv.fill([_poly(x, y - 0.5 * t, y + 0.5 * t)], brow_col, EYEBROWS)


def _hairline_top(a: dict[str, float]) -> float:
    """Height of the hairline's middle; the fringe hangs from here."""
    return -0.58 - 0.16 * a["hairline"]


def _hairline(a: dict[str, float], h: _Head, x: np.ndarray) -> np.ndarray:
    """Where forehead skin meets hair: high in the middle, down to the temples, notched at the parting."""
    wt = float(h.half_width(h.temple_y))
    top = _hairline_top(a)
    part = 0.35 * a["hair_part"] * wt
    y = top + (h.temple_y - top) * np.minimum(np.abs(x) / wt, 1) ** 2.2
    return y - 0.06 * np.exp(-(((x - part) / 0.07) ** 2))


def _draw_front_hair(cv: _Canvas, a: dict[str, float], h: _Head, col: _Colours) -> None:
    """Hair cap above the hairline (with a few strands) and, with ``fringe``, scalloped bangs."""
    cy, rx, ry = _hair_outer(a, h)
    wt = float(h.half_width(h.temple_y))
    side_y = -0.04  # the cap reaches down the sides this far, then slants in to the temple
    s = (side_y - cy) / ry
    t0, t1 = math.pi - math.asin(s), 2 * math.pi + math.asin(s)
    arc = _ellipse(0, cy, rx, ry, 40, t0, t1)
    x = _lin(wt, -wt, 33)
    cv.fill([np.concatenate([arc, _xy(x, _hairline(a, h, x))])], col.hair, HAIR)
    part = 0.35 * a["hair_part"] * wt
    t_part = 1.5 * math.pi + math.asin(max(-0.9, min(0.9, part / rx)))
    for f, end in ((0.88, 0.15), (0.7, 0.6)):  # strands from the parting along the silhouette, each side
        for t_end in (t0 + end, t1 - end):
            strand = _ellipse(part * (1 - f), cy + (1 - f) * 0.3, f * rx, f * ry, 10, t_part, t_end)
            strand[:, 1] = np.minimum(strand[:, 1], _hairline(a, h, strand[:, 0]) - 0.04)  # stay in the hair
            cv.stroke(strand, col.hair * 0.8, 0.02)
    fringe = a["fringe"]
    if fringe * cv.unit < 0.25:
        return
    x = _lin(-wt, wt, 49)
    line = _hairline(a, h, x)
    top = _hairline_top(a)
    depth = (h.eye_y - h.eye_up - 0.15) - top
    across = _clamp(1 - (np.abs(x) / wt) ** 5, 0, 1)
    strands = np.abs(np.sin(math.pi * 3.5 * (x - part) / wt)) ** 0.7
    edge = line + fringe * across * (depth - 0.06 * strands)
    cv.fill([_poly(x, line - 0.05, np.maximum(edge, line))], col.hair, HAIR)


# --------------------------------------------------------------------------------------------------
# Output-size finishing: lighting, blush, texture noise (per-class weights)

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


def _finish(rgb: np.ndarray, lab: np.ndarray, a: dict[str, float], h: _Head, cv: _Canvas) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True, eq=False)
class FaceSample:
    """One rendered face: RGB (H, W, 3) uint8, labels (H, W) uint8 class ids, the attributes used."""

    image: np.ndarray
    labels: np.ndarray
    attributes: dict[str, float]


def render(attrs: dict[str, float], size: int = 128) -> FaceSample:
    """Draw the face described by ``attrs`` (all keys of ``ATTRIBUTE_SPECS``) at ``size`` x ``size``."""
    if not 16 <= size <= 1024:
        raise ValueError(f"size must be in [16, 1024], got {size}")
    a = _checked(attrs)
    col = _colours(a)
    h = _head(a)
    cv = _Canvas(size, a, col.bg)
    _draw_back_hair(cv, a, h, col)
    _draw_clothes(cv, col)
    _draw_neck(cv, h, col)
    _draw_ears(cv, a, h, col)
    _draw_face(cv, h, col)
    _draw_nose(cv, a, col)
    _draw_mouth(cv, a, col)
    _draw_eyes(cv, a, h, col)
    _draw_brows(cv, a, h, col)
    _draw_front_hair(cv, a, h, col)
    o = cv.ss // 2
    labels = np.ascontiguousarray(cv.lab[o :: cv.ss, o :: cv.ss])
    rgb = cv2.resize(cv.rgb, (size, size), interpolation=cv2.INTER_AREA)
    return FaceSample(_finish(rgb, labels, a, h, cv), labels, a)


def render_face(seed: int, size: int = 128, **overrides: float) -> FaceSample:
    """The face of ``seed``, with some attributes replaced (e.g. ``smile=1.0``)."""
    attrs = sample_attributes(seed)
    unknown = set(overrides) - set(attrs)
    if unknown:
        raise KeyError(f"unknown face attributes: {sorted(unknown)}")
    attrs.update(overrides)
    return render(attrs, size)


def render_batch(seeds: Iterable[int], size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Images (B, H, W, 3) uint8 and labels (B, H, W) uint8 for a list or range of seeds."""
    samples = [render_face(int(s), size) for s in seeds]
    return np.stack([s.image for s in samples]), np.stack([s.labels for s in samples])


def colorize(labels: np.ndarray) -> np.ndarray:
    """Label map -> RGB picture in the class colours."""
    return PALETTE[labels]


# --------------------------------------------------------------------------------------------------
# Command line: contact sheets

# The sweep shows each row on the same calm face: eyes open, mouth shut, no fringe, looking ahead.
SWEEP_BASE = {"eye_open": 0.9, "mouth_open": 0.0, "fringe": 0.0, "gaze_x": 0.0, "gaze_y": 0.0, "smile": 0.3}
SWEEP_ATTRIBUTES = ("smile", "mouth_open", "eye_open", "gaze_x", "gaze_y", "pupil_size", "eyebrow_height",
                    "fringe", "hair_volume", "nose_size", "ear_size")


def _sheet(tiles: list[list[np.ndarray]], zoom: int) -> np.ndarray:
    rows = [np.concatenate(r, axis=1) for r in tiles]
    sheet = np.concatenate(rows, axis=0)
    return cv2.resize(sheet, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom > 1 else sheet


def grid(path: str, size: int = 64, rows: int = 4, cols: int = 8, first_seed: int = 0, zoom: int = 1) -> None:
    """Contact sheet: each cell is a face and its label colour map side by side."""
    tiles = []
    for r in range(rows):
        row = []
        for c in range(cols):
            s = render_face(first_seed + r * cols + c, size)
            row += [s.image, colorize(s.labels)]
        tiles.append(row)
    _write(path, _sheet(tiles, zoom))


def sweep(path: str, seed: int = 0, size: int = 64, steps: int = 8, zoom: int = 1, labels: bool = False,
          names: Sequence[str] = SWEEP_ATTRIBUTES) -> None:
    """One row per editable attribute, swept over its range with everything else fixed."""
    tiles = []
    for name in names:
        lo, hi = ATTRIBUTE_RANGES[name]
        row = []
        for v in np.linspace(lo, hi, steps):
            s = render_face(seed, size, **{**SWEEP_BASE, name: float(v)})
            row += [s.image, colorize(s.labels)] if labels else [s.image]
        tiles.append(row)
    _write(path, _sheet(tiles, zoom))


def _write(path: str, rgb: np.ndarray) -> None:
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    print(f"wrote {path} ({rgb.shape[1]}x{rgb.shape[0]})")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", metavar="PNG", help="write a contact sheet of faces + label maps")
    p.add_argument("--sweep", metavar="PNG", help="write one row per editable attribute")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="first seed (grid) or the swept face (sweep)")
    p.add_argument("--zoom", type=int, default=1, help="nearest-neighbour magnification of the sheets")
    p.add_argument("--labels", action="store_true", help="sweep: show label maps next to the images")
    from editgan_core.cli_common import setup_logging

    setup_logging()
    args = p.parse_args(argv)
    if not (args.grid or args.sweep):
        p.error("nothing to do: give --grid or --sweep")
    if args.grid:
        grid(args.grid, args.size, first_seed=args.seed, zoom=args.zoom)
    if args.sweep:
        sweep(args.sweep, args.seed, args.size, zoom=args.zoom, labels=args.labels)


if __name__ == "__main__":
    main()
