"""Putting an edited crop back into the original photo at the photo's own resolution.

Only the edit region goes back: the pixels whose labels changed or whose colour moved noticeably,
grown a little and feathered, so the seam is soft and every photo pixel beyond it is the original's,
bit for bit (the model's reconstruction of the rest of the crop is never pasted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from editgan_core.photos.align import Alignment

PIXEL_THRESHOLD = 0.1  # mean colour change (0..1) that counts as edited where the labels did not change


@dataclass(frozen=True)
class PasteBack:
    """The photo with the edit, and per photo pixel the weight the edited crop got (0 = the original pixel)."""

    image: np.ndarray  # (H, W, 3) uint8
    weight: np.ndarray  # (H, W) float32 in [0, 1]

    @property
    def changed(self) -> np.ndarray:
        """Where the photo may differ from the original: the dilated, feathered edit region."""
        return self.weight > 0


def changed_pixels(before: np.ndarray, after: np.ndarray, before_labels: np.ndarray | None = None,
                   after_labels: np.ndarray | None = None, class_ids: Sequence[int] | None = None,
                   threshold: float = PIXEL_THRESHOLD, min_area: int | None = None) -> np.ndarray:
    """Crop pixels an edit touched: label changes (of ``class_ids`` when given) and colour changes above
    ``threshold`` (mean over RGB, 0..1), without specks smaller than ``min_area`` pixels (the segmentation's
    flicker along part boundaries; default 3 pixels of a 64 px crop, scaled by area)."""
    diff = np.abs(after.astype(np.float32) - before.astype(np.float32)).mean(axis=2) / 255.0
    changed = diff > threshold
    if before_labels is not None and after_labels is not None:
        relabelled = before_labels != after_labels
        if class_ids is not None:
            relabelled &= np.isin(before_labels, class_ids) | np.isin(after_labels, class_ids)
        changed |= relabelled
    min_area = max(3, round(3 * (changed.shape[0] / 64) ** 2)) if min_area is None else min_area
    count, components, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False  # component 0 is the unchanged rest
    return keep[components] if count > 1 else changed


def feathered_weight(changed: np.ndarray, grow: float | None = None, feather: float | None = None) -> np.ndarray:
    """1 within ``grow`` pixels of a changed pixel, easing to 0 over the next ``feather`` pixels, 0 beyond.

    Defaults scale with the crop: 1 and 2 pixels of a 64 px crop.
    """
    size = max(changed.shape)
    grow = size / 64 if grow is None else grow
    feather = size / 32 if feather is None else feather
    if not changed.any():
        return np.zeros(changed.shape, np.float32)
    distance = cv2.distanceTransform((~changed).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    t = np.clip(1.0 - (distance - grow) / max(feather, 1e-6), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no visible kink at either end


def _window(weight: np.ndarray, alignment: Alignment) -> tuple[int, int, int, int] | None:
    """Photo pixels (x0, y0, x1, y1) that the crop's nonzero weight can reach, clipped to the photo."""
    ys, xs = np.nonzero(weight)
    if not len(xs):
        return None
    corners = [(xs.min(), ys.min()), (xs.max() + 1, ys.min()), (xs.max() + 1, ys.max() + 1), (xs.min(), ys.max() + 1)]
    quad = alignment.to_photo([(float(x), float(y)) for x, y in corners])
    w, h = alignment.photo_size
    x0, y0 = (max(0, math.floor(v) - 2) for v in quad.min(axis=0))
    x1, y1 = (math.ceil(v) + 2 for v in quad.max(axis=0))
    x1, y1 = min(w, x1), min(h, y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def paste_back(photo: np.ndarray, alignment: Alignment, edited: np.ndarray, weight: np.ndarray) -> PasteBack:
    """Blend ``edited`` (the crop after the edit) into ``photo`` with ``weight`` (crop-sized, 0..1)."""
    h, w = photo.shape[:2]
    if (w, h) != tuple(alignment.photo_size):
        raise ValueError(f"the alignment is for a {alignment.photo_size} photo, got {w}x{h}")
    full = np.zeros((h, w), np.float32)
    window = _window(weight, alignment)
    if window is None:
        return PasteBack(photo.copy(), full)
    a, b, size = alignment.a, alignment.b, alignment.size
    if alignment.scale < 1:  # the face is smaller in the photo than the crop: shrink the crop first (no aliasing)
        side = max(1, round(size * alignment.scale))
        edited = cv2.resize(edited, (side, side), interpolation=cv2.INTER_AREA)
        weight = cv2.resize(weight, (side, side), interpolation=cv2.INTER_AREA)
        a, b = a * side / size, b * side / size
    x0, y0, x1, y1 = window
    shifted = Alignment(a, b + a * complex(x0, y0), edited.shape[0], (x1 - x0, y1 - y0))
    matrix = shifted.inverse_cv_matrix()
    ink = cv2.warpAffine(edited, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(weight, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = np.clip(alpha, 0.0, 1.0)
    alpha[alpha < 1e-3] = 0.0  # interpolation dust: leave those pixels exactly as they were
    out = photo.copy()
    region = out[y0:y1, x0:x1]
    blended = np.rint(region * (1 - alpha[..., None]) + ink.astype(np.float32) * alpha[..., None])
    touched = alpha > 0
    region[touched] = np.clip(blended, 0, 255).astype(np.uint8)[touched]
    full[y0:y1, x0:x1] = alpha
    return PasteBack(out, full)
