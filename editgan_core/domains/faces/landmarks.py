"""Where a rendered face's eyes and mouth are: the ground truth that alignment is measured against.

The same pose transform as ``canvas.Canvas`` (face units -> pixels), written for the output image in
continuous coordinates with pixel corners at whole numbers. Eyes: the centre of the lid line; mouth: the
centre of the mouth line (where the lips meet).
"""

from __future__ import annotations

import math

from editgan_core.domains.faces.attributes import checked_attributes
from editgan_core.domains.faces.geometry import head_geometry

# The attributes that move the landmarks, at the values of the demo bundle's framing template
CANONICAL_POSE: dict[str, float] = {"pos_x": 0.0, "pos_y": 0.0, "scale": 0.0, "tilt": 0.0, "eye_spacing": 0.5,
                                    "smile": 0.0}


def landmarks(attrs: dict[str, float], size: int) -> dict[str, tuple[float, float]]:
    """Pixel positions of ``left_eye`` and ``right_eye`` (as seen in the image) and ``mouth`` in a ``size`` render."""
    a = checked_attributes(attrs)
    h = head_geometry(a)
    unit = 0.265 * size * (1 + 0.07 * a["scale"])
    theta = math.radians(6.0 * a["tilt"])
    c, s = unit * math.cos(theta), unit * math.sin(theta)
    cx, cy = size * (0.5 + 0.04 * a["pos_x"]), size * (0.47 + 0.03 * a["pos_y"])
    mouth_y = 0.66 + 0.06 * a["smile"]  # the mouth line's centre (``drawing._draw_mouth``)

    def px(x: float, y: float) -> tuple[float, float]:
        return c * x - s * y + cx, s * x + c * y + cy

    return {"left_eye": px(-h.eye_x, h.eye_y), "right_eye": px(h.eye_x, h.eye_y), "mouth": px(0.0, mouth_y)}


def template(size: int = 1) -> dict[str, tuple[float, float]]:
    """Landmarks of a face in the canonical pose, as fractions of the image side (``size=1``)."""
    from editgan_core.domains.faces.attributes import sample_attributes

    return landmarks({**sample_attributes(0), **CANONICAL_POSE}, size)


def framing_entry() -> dict[str, object]:
    """The manifest ``framing`` of bundles trained on this domain: the canonical landmarks, fitted by similarity."""
    return {"kind": "landmarks", "fit": "similarity", "padding": "reflect",
            "points": {name: [round(x, 6), round(y, 6)] for name, (x, y) in template().items()}}


BACKGROUND = [142, 142, 142]  # the renders' mean background colour: transparent photo pixels are laid on it
