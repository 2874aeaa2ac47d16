"""The face parts as polygons in face units, filled in painter's order (back to front)."""

from __future__ import annotations

import math

import numpy as np

from editgan_core.domains.faces.canvas import Canvas
from editgan_core.domains.faces.classes import (
    CLOTHES,
    EARS,
    EYE_WHITES,
    EYEBROWS,
    HAIR,
    IRISES,
    LIPS,
    MOUTH_INTERIOR,
    NECK,
    NOSE,
    PUPILS,
    SKIN,
)
from editgan_core.domains.faces.colours import EYE_WHITE_RGB, MOUTH_DARK_RGB, PUPIL_RGB, TEETH_RGB, Colours
from editgan_core.domains.faces.geometry import Head, clamp, ellipse, lin, poly, xy


def _hair_outer(a: dict[str, float], h: Head) -> tuple[float, float, float]:
    """Centre y, half-width and half-height of the ellipse the hair silhouette follows."""
    v = a["hair_volume"]
    return -0.10, h.a + 0.08 + 0.24 * v, 1.05 + 0.24 * v


def _draw_back_hair(cv: Canvas, a: dict[str, float], h: Head, col: Colours) -> None:
    """Hair behind the head: top arc plus side curtains down to ``hair_length``."""
    cy, rx, ry = _hair_outer(a, h)
    top = ellipse(0, cy, rx, ry, 36, math.pi, 2 * math.pi)
    bottom = 0.25 + 1.15 * a["hair_length"]
    side = rx * (0.96 + 0.04 * a["hair_volume"])
    r = min(0.25, 0.5 * (bottom - cy))
    right = np.array([[side, cy + 0.3 * (bottom - cy)], [side * 0.98, bottom - r],
                      [side - 0.3 * r, bottom - 0.15 * r], [side - r, bottom]])
    left = right[::-1] * np.array([-1, 1])
    cv.fill([np.concatenate([top, right, left])], col.hair * 0.8, HAIR)


def _draw_clothes(cv: Canvas, col: Colours) -> None:
    """Shoulders: the upper half of a squarish superellipse reaching past the image bottom."""
    t = lin(math.pi, 2 * math.pi, 33)
    c, s = np.cos(t), np.sin(t)
    p = 2.0 / 2.8
    x = 1.65 * np.sign(c) * np.abs(c) ** p
    y = 2.85 + 1.40 * np.sign(s) * np.abs(s) ** p
    cv.fill([np.concatenate([xy(x, y), [[1.65, 4.0], [-1.65, 4.0]]])], col.clothes, CLOTHES)


def _draw_neck(cv: Canvas, h: Head, col: Colours) -> None:
    """Neck with a round neckline cut into the clothes and a shadow under the jaw."""
    nw = 0.27 + 0.5 * (h.a - 0.70)
    x = lin(nw * 1.55, -nw * 1.55, 17)
    neckline = xy(x, 1.52 + 0.16 * (1 - (x / (nw * 1.55)) ** 2))
    body = [[-nw, 0.35], [nw, 0.35], [nw, 1.22], [nw * 1.2, 1.40]]
    cv.fill([np.concatenate([body, neckline, [[-nw * 1.2, 1.40], [-nw, 1.22]]])], col.skin * 0.9, NECK)
    jaw = h.outline(64)
    jaw = jaw[jaw[:, 1] >= 0] + np.array([0.0, 0.10])
    jaw[:, 0] = clamp(jaw[:, 0], -nw, nw)
    cv.fill([jaw], col.skin * 0.72, NECK)
    cv.stroke(neckline, col.clothes * 0.65, 0.035)


def _draw_ears(cv: Canvas, a: dict[str, float], h: Head, col: Colours) -> None:
    """Ears at the sides, partly hidden behind the face; an inner fold line for depth."""
    e = a["ear_size"]
    rx, ry, y = 0.08 + 0.12 * e, 0.15 + 0.16 * e, 0.14
    for side in (-1, 1):
        x = side * (float(h.half_width(y)) + 0.3 * rx)
        cv.fill([ellipse(x, y, rx, ry, 24)], col.skin * 0.95, EARS)
        t0 = -0.55 * math.pi if side > 0 else 1.55 * math.pi
        t1 = t0 + side * 0.95 * math.pi
        fold = ellipse(x + side * 0.12 * rx, y + 0.05 * ry, 0.5 * rx, 0.6 * ry, 10, t0, t1)
        cv.stroke(fold, col.skin * 0.7, 0.025)


def _draw_face(cv: Canvas, h: Head, col: Colours) -> None:
    """The skin of the head; it hides the inner halves of the ears and the top of the neck."""
    cv.fill([h.outline(64)], col.skin, SKIN)


def _draw_nose(cv: Canvas, a: dict[str, float], col: Colours) -> None:
    """A rounded drop shape, darker than skin, with a nostril line and a tip highlight."""
    s = 0.55 + 1.1 * a["nose_size"]
    y = 0.38
    rx, ry = 0.08 * s, 0.055 * s
    bulb = ellipse(0, y, rx, ry, 20, -0.15 * math.pi, 1.15 * math.pi)
    bridge = np.array([[-0.5 * rx, y - 2.4 * ry], [0.0, y - 2.9 * ry], [0.5 * rx, y - 2.4 * ry]])
    cv.fill([np.concatenate([bulb, bridge])], col.skin * 0.82, NOSE)
    nostrils = ellipse(0, y - 0.1 * ry, 0.85 * rx, ry, 12, 0.1 * math.pi, 0.9 * math.pi)
    cv.stroke(nostrils, col.skin * 0.5, 0.025)
    cv.fill([ellipse(-0.3 * rx, y - 0.45 * ry, 0.22 * rx, 0.2 * ry, 10)], np.minimum(col.skin * 1.1, 255))


def _draw_mouth(cv: Canvas, a: dict[str, float], col: Colours) -> None:
    """Lips around a mouth line bent by ``smile``; ``mouth_open`` parts them to show teeth + interior."""
    smile, m = a["smile"], a["mouth_open"]
    half = (0.20 + 0.08 * a["mouth_width"]) * (1 + 0.10 * max(smile, 0.0))
    x = lin(-half, half, 25)
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
    cv.fill([poly(x, top, bottom)], col.lips, LIPS)
    cv.fill([poly(x, top, inner_top + 0.25 * tu * f)], col.lips * 0.82)  # upper lip in shadow
    if gap * cv.unit > 0.35:  # open: dark interior, upper teeth hanging from the top edge
        cv.fill([poly(x, inner_top, inner_bottom)], MOUTH_DARK_RGB, MOUTH_INTERIOR)
        cv.fill([poly(x, inner_top, np.minimum(inner_top + 0.05 * f, inner_bottom))], TEETH_RGB, MOUTH_INTERIOR)
    else:
        cv.stroke(xy(x[1:-1], mid[1:-1]), col.lips * 0.5, 0.022)
    if abs(smile) > 0.2:  # creases just outside the corners make the curvature readable when small
        k = (abs(smile) - 0.2) / 0.8
        crease = col.skin * (1 - 0.3 * k)
        for side in (-1, 1):
            cx, cy = side * (half + 0.03), mid[0] - 0.01 * math.copysign(1, smile)
            arc = xy(cx + side * np.array([0.0, 0.018, 0.0]), cy + 0.05 * np.array([-1.0, 0.0, 1.0]))
            cv.stroke(arc, crease, 0.02)


def _lid_profile(x: np.ndarray, cx: float, w: float) -> np.ndarray:
    """Lid height profile across the eye: 1 in the middle, 0 at the corners (almond shape)."""
    d = clamp((x - cx) / w, -1, 1)
    return (1 - d * d) ** 0.7


def _draw_eyes(cv: Canvas, a: dict[str, float], h: Head, col: Colours) -> None:
    """Eye opening between the lids; iris/pupil clipped to it; a lash line along the upper lid."""
    w, up, down = h.eye_w, h.eye_up, h.eye_down
    r_iris = 0.43 * (up + down)
    r_pupil = r_iris * (0.22 + 0.56 * a["pupil_size"])
    lash_col = np.minimum(col.hair * 0.35, 40) + 12
    for side in (-1, 1):
        ex, ey = side * h.eye_x, h.eye_y
        x = lin(ex - w, ex + w, 25)
        c = _lid_profile(x, ex, w)
        lower = ey + down * c
        upper = lower - a["eye_open"] * (up + down) * c
        if a["eye_open"] * (up + down) * cv.unit > 0.3:
            opening = poly(x, upper, lower)
            cv.fill([opening], EYE_WHITE_RGB, EYE_WHITES)
            ix = ex + a["gaze_x"] * (w - r_iris) * 0.95
            iy = ey - 0.5 * (up - down) + a["gaze_y"] * 0.6 * r_iris
            glint = 0.2 * r_iris
            cv.clipped(opening, [
                (ellipse(ix, iy, r_iris, r_iris, 28), col.iris * 0.55, IRISES),
                (ellipse(ix, iy, 0.8 * r_iris, 0.8 * r_iris, 28), col.iris, None),
                (ellipse(ix, iy, r_pupil, r_pupil, 20), PUPIL_RGB, PUPILS),
                (ellipse(ix - 0.38 * r_iris, iy - 0.38 * r_iris, glint, glint, 12), (250, 250, 250), None),
            ])
        # lash line: thicker towards the outer corner, with a small wing
        outer = (x - ex) * side / w  # -1 inner corner .. 1 outer corner
        t = 0.022 + 0.03 * (outer + 1) / 2
        lash = np.concatenate([xy(x, upper - t)[::side], [[ex + side * 1.12 * w, ey - 0.03]],
                               xy(x, upper + 0.3 * t)[::-side]])
        cv.fill([lash], lash_col, SKIN)


def _draw_brows(cv: Canvas, a: dict[str, float], h: Head, col: Colours) -> None:
    """Arched brows whose gap above the eye follows ``eyebrow_height``."""
    hgt = a["eyebrow_height"]
    thick = 0.05 + 0.04 * a["brow_thickness"]
    brow_col = np.minimum(col.hair * 0.65, 130) + 8
    for side in (-1, 1):
        ex = side * h.eye_x
        cy = h.eye_y - h.eye_up - 0.07 - 0.20 * hgt
        x = lin(ex - 1.1 * h.eye_w, ex + 1.15 * h.eye_w, 17)
        d = (x - ex) / (1.12 * h.eye_w)
        outer = d * side  # -1 inner end .. 1 outer end
        y = cy - (0.05 + 0.03 * hgt) * (1 - d * d) + 0.05 * a["brow_tilt"] * outer
        t = thick * (1 - 0.45 * (outer + 1) / 2) * np.sqrt(clamp(1.02 - outer**8, 0.0, 1.0))
        cv.fill([poly(x, y - 0.5 * t, y + 0.5 * t)], brow_col, EYEBROWS)


def _hairline_top(a: dict[str, float]) -> float:
    """Height of the hairline's middle; the fringe hangs from here."""
    return -0.58 - 0.16 * a["hairline"]


def _hairline(a: dict[str, float], h: Head, x: np.ndarray) -> np.ndarray:
    """Where forehead skin meets hair: high in the middle, down to the temples, notched at the parting."""
    wt = float(h.half_width(h.temple_y))
    top = _hairline_top(a)
    part = 0.35 * a["hair_part"] * wt
    y = top + (h.temple_y - top) * np.minimum(np.abs(x) / wt, 1) ** 2.2
    return y - 0.06 * np.exp(-(((x - part) / 0.07) ** 2))


def _draw_front_hair(cv: Canvas, a: dict[str, float], h: Head, col: Colours) -> None:
    """Hair cap above the hairline (with a few strands) and, with ``fringe``, scalloped bangs."""
    cy, rx, ry = _hair_outer(a, h)
    wt = float(h.half_width(h.temple_y))
    side_y = -0.04  # the cap reaches down the sides this far, then slants in to the temple
    s = (side_y - cy) / ry
    t0, t1 = math.pi - math.asin(s), 2 * math.pi + math.asin(s)
    arc = ellipse(0, cy, rx, ry, 40, t0, t1)
    x = lin(wt, -wt, 33)
    cv.fill([np.concatenate([arc, xy(x, _hairline(a, h, x))])], col.hair, HAIR)
    part = 0.35 * a["hair_part"] * wt
    t_part = 1.5 * math.pi + math.asin(max(-0.9, min(0.9, part / rx)))
    for f, end in ((0.88, 0.15), (0.7, 0.6)):  # strands from the parting along the silhouette, each side
        for t_end in (t0 + end, t1 - end):
            strand = ellipse(part * (1 - f), cy + (1 - f) * 0.3, f * rx, f * ry, 10, t_part, t_end)
            strand[:, 1] = np.minimum(strand[:, 1], _hairline(a, h, strand[:, 0]) - 0.04)  # stay in the hair
            cv.stroke(strand, col.hair * 0.8, 0.02)
    fringe = a["fringe"]
    if fringe * cv.unit < 0.25:
        return
    x = lin(-wt, wt, 49)
    line = _hairline(a, h, x)
    top = _hairline_top(a)
    depth = (h.eye_y - h.eye_up - 0.15) - top
    across = clamp(1 - (np.abs(x) / wt) ** 5, 0, 1)
    strands = np.abs(np.sin(math.pi * 3.5 * (x - part) / wt)) ** 0.7
    edge = line + fringe * across * (depth - 0.06 * strands)
    cv.fill([poly(x, line - 0.05, np.maximum(edge, line))], col.hair, HAIR)



def draw_parts(cv: Canvas, a: dict[str, float], h: Head, col: Colours) -> None:
    """Every part, back to front: later parts hide earlier ones in both the picture and the labels."""
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
