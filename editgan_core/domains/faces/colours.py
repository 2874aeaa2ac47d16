"""The flat colours of one face, from its appearance attributes (colour ramps and HSV)."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

_SKIN_RAMP = np.array([[255, 226, 204], [242, 196, 162], [226, 172, 128], [198, 136, 94],
                       [150, 96, 64], [98, 62, 44]], np.float64)
_HAIR_RAMP = np.array([[28, 22, 22], [62, 40, 28], [106, 66, 38], [142, 58, 30], [196, 104, 46],
                       [214, 172, 96], [232, 214, 168]], np.float64)
_IRIS_RAMP = np.array([[74, 42, 22], [122, 72, 30], [138, 110, 48], [70, 132, 68], [52, 132, 140],
                       [58, 104, 192], [124, 140, 160]], np.float64)
EYE_WHITE_RGB = (246, 246, 242)
PUPIL_RGB = (18, 12, 14)
MOUTH_DARK_RGB = (96, 26, 34)
TEETH_RGB = (246, 242, 232)


def _ramp(ramp: np.ndarray, t: float) -> np.ndarray:
    """Piecewise-linear colour ramp, t in [0, 1]."""
    x = t * (len(ramp) - 1)
    i = min(int(x), len(ramp) - 2)
    return ramp[i] + (x - i) * (ramp[i + 1] - ramp[i])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0, 1] (hue wraps) -> RGB in [0, 255]."""
    return 255.0 * np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


Colour = np.ndarray | tuple[float, float, float]


@dataclass(frozen=True)
class Colours:
    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    clothes: np.ndarray
    bg: tuple[np.ndarray, np.ndarray]


def face_colours(a: dict[str, float]) -> Colours:
    """All flat colours of one face; lips mix a darkened skin with rose so they read on any skin tone."""
    skin = _ramp(_SKIN_RAMP, a["skin_tone"])
    rose = np.array([196.0, 74.0, 86.0]) * (0.55 + 0.45 * skin / 255)
    lips = (1 - a["lip_tint"]) * skin * np.array([0.86, 0.66, 0.64]) + a["lip_tint"] * rose
    bg1 = _hsv(a["bg_hue"], 0.12 + 0.43 * a["bg_saturation"], 0.45 + 0.5 * a["bg_value"])
    bg2 = _hsv(a["bg_hue"] + 0.15 * a["bg_hue_shift"], 0.12 + 0.43 * a["bg_saturation"],
               0.35 + 0.5 * a["bg_value"])
    clothes = _hsv(a["clothes_hue"], 0.15 + 0.65 * a["clothes_saturation"], 0.3 + 0.6 * a["clothes_value"])
    return Colours(skin, _ramp(_HAIR_RAMP, a["hair_tone"]), _ramp(_IRIS_RAMP, a["iris_tone"]), lips,
                    clothes, (bg1, bg2))

