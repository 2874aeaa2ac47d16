"""Rendering a face: attributes -> picture and pixel-exact part labels (a pure function of the attributes)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from editgan_core.domains.faces.attributes import checked_attributes, sample_attributes
from editgan_core.domains.faces.canvas import Canvas
from editgan_core.domains.faces.classes import PALETTE
from editgan_core.domains.faces.colours import face_colours
from editgan_core.domains.faces.drawing import draw_parts
from editgan_core.domains.faces.finishing import finish
from editgan_core.domains.faces.geometry import head_geometry


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
    a = checked_attributes(attrs)
    col = face_colours(a)
    h = head_geometry(a)
    cv = Canvas(size, a, col.bg)
    draw_parts(cv, a, h, col)
    o = cv.ss // 2
    labels = np.ascontiguousarray(cv.lab[o :: cv.ss, o :: cv.ss])
    rgb = cv2.resize(cv.rgb, (size, size), interpolation=cv2.INTER_AREA)
    return FaceSample(finish(rgb, labels, a, h, cv), labels, a)


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

