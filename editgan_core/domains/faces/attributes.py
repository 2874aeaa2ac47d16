"""The drawn values of one face and how a seed picks them.

``sample_attributes(seed)`` draws every random number of a face (shape, appearance, pose, texture-noise
seed) from the seed alone, so overriding one attribute changes only the parts that attribute moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from editgan_core.domains.faces.classes import (
    EARS,
    EYE_WHITES,
    EYEBROWS,
    HAIR,
    IRISES,
    LIPS,
    MOUTH_INTERIOR,
    NOSE,
    PUPILS,
)


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


def checked_attributes(attrs: dict[str, float]) -> dict[str, float]:
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

