"""The part classes of the drawn faces: stable ids, names and the colours the UI paints them with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
