"""Synthetic "in-the-wild" photos: a demo face pasted, scaled and turned, into a larger textured scene.

The face's landmarks are known exactly (``domains.faces.landmarks``), so alignment, paste-back and any
detector can be measured against ground truth; the tests and ``python -m editgan_core.photos.bench`` both
build their photos here. The face is rendered in the canonical pose of the demo bundle's framing, so the
perfect aligned crop is the render itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from editgan_core.domains.faces import FaceSample, render, sample_attributes
from editgan_core.domains.faces.landmarks import CANONICAL_POSE, landmarks
from editgan_core.photos.align import Alignment

PHOTO_SIZE = (1024, 768)  # (width, height)


@dataclass(frozen=True)
class Composite:
    """The photo, the face's true landmarks in it, the true alignment (photo -> render) and the render."""

    photo: np.ndarray  # (H, W, 3) uint8
    landmarks: dict[str, tuple[float, float]]
    alignment: Alignment
    face: FaceSample


def textured_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A busy scene: smooth colour fields, random shapes and lines, and fine grain."""
    w, h = size
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    scene = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(40):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(8, max(9, w // 8)))
        if rng.random() < 0.5:
            cv2.circle(scene, (x, y), r, colour, -1, cv2.LINE_AA)
        else:
            cv2.line(scene, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), colour,
                     int(rng.integers(1, 6)), cv2.LINE_AA)
    grain = rng.normal(0, 8, scene.shape)
    return np.clip(scene + grain, 0, 255).astype(np.uint8)


def make_composite(seed: int, model_size: int = 64, photo_size: tuple[int, int] = PHOTO_SIZE,
                   face_side: tuple[float, float] = (180, 420), max_angle: float = 30.0) -> Composite:
    """Face ``seed`` rendered at ``model_size``, enlarged to ``face_side`` photo pixels, turned up to ``max_angle``
    degrees and placed anywhere it fits whole in a ``photo_size`` scene."""
    rng = np.random.default_rng(seed)
    face = render({**sample_attributes(seed), **CANONICAL_POSE}, model_size)
    w, h = photo_size
    side = float(rng.uniform(*face_side))
    theta = math.radians(float(rng.uniform(-max_angle, max_angle)))
    reach = side / 2 * (abs(math.cos(theta)) + abs(math.sin(theta)))  # half-extent of the turned square
    if 2 * reach >= min(w, h):
        raise ValueError(f"a {side:.0f} px face turned {math.degrees(theta):.0f} degrees does not fit {w}x{h}")
    centre = complex(rng.uniform(reach, w - reach), rng.uniform(reach, h - reach))
    a = model_size / side * complex(math.cos(theta), math.sin(theta))  # photo -> render
    alignment = Alignment(a, model_size / 2 * (1 + 1j) - a * centre, model_size, photo_size)
    inverse = alignment.inverse_cv_matrix()
    face_px = cv2.warpAffine(face.image, inverse, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    cover = cv2.warpAffine(np.full((model_size, model_size), 255, np.uint8), inverse, (w, h), flags=cv2.INTER_LINEAR)
    alpha = cover.astype(np.float32)[..., None] / 255.0
    photo = np.rint(face_px * alpha + textured_background(rng, photo_size) * (1 - alpha)).astype(np.uint8)
    truth = alignment.to_photo(list(landmarks(face.attributes, model_size).values()))
    return Composite(photo, {name: (float(x), float(y)) for name, (x, y) in zip(("left_eye", "right_eye", "mouth"),
                                                                                  truth, strict=True)},
                     alignment, face)
