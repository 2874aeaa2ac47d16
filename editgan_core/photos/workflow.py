"""The photo round trip in three calls: ``align_photo`` -> (embed and edit the crop) -> ``paste_edit``.

``EditGANPipeline.align`` and ``paste_back`` call these with the bundle's framing and background colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from editgan_core.photos.align import Alignment, Point, align_box, align_points, centre_square, crop
from editgan_core.photos.decode import WHITE, BackgroundColour, Photo, decode_photo
from editgan_core.photos.framing import Framing
from editgan_core.photos.pasteback import PasteBack, changed_pixels, feathered_weight, paste_back


@dataclass(frozen=True)
class AlignedPhoto:
    """A photo at full resolution, how it maps onto the model's framing, and the crop the model sees."""

    photo: Photo
    alignment: Alignment
    crop: np.ndarray  # (size, size, 3) uint8
    how: str  # "points", "box" or "centre"


def align_photo(source: str | Path | bytes | Image.Image | np.ndarray | Photo, framing: Framing, *,
                points: Mapping[str, Point] | None = None, box: Sequence[float] | None = None,
                background: BackgroundColour = WHITE) -> AlignedPhoto:
    """Decode ``source`` and crop it to ``framing``: from eye and mouth points, from a box, else its centre square."""
    photo = source if isinstance(source, Photo) else decode_photo(source, background)
    if points is not None:
        alignment, how = align_points(points, framing, photo.size), "points"
    elif box is not None:
        alignment, how = align_box(box, framing, photo.size), "box"
    else:
        alignment, how = centre_square(framing, photo.size), "centre"
    return AlignedPhoto(photo, alignment, crop(photo.pixels, alignment, framing.padding, background), how)


def paste_edit(aligned: AlignedPhoto, before: np.ndarray, after: np.ndarray, before_labels: np.ndarray | None = None,
               after_labels: np.ndarray | None = None, class_ids: Sequence[int] | None = None,
               grow: float | None = None, feather: float | None = None) -> PasteBack:
    """The photo with the edit (``before`` -> ``after``, renders of the crop) blended in around what changed
    (label changes of ``class_ids`` when given, e.g. the edit vectors' classes, and clear colour changes)."""
    if after.shape[:2] != aligned.crop.shape[:2]:
        raise ValueError(f"the edit is {after.shape[1]}x{after.shape[0]}, the crop {aligned.alignment.size} px")
    changed = changed_pixels(before, after, before_labels, after_labels, class_ids)
    weight = feathered_weight(changed, grow, feather)
    return paste_back(aligned.photo.pixels, aligned.alignment, after, weight)
