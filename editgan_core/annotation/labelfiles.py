"""Label-map files as class ids: grey ids or colour pictures, checked against a bundle before any work.

Users bring label maps in two forms: grey PNGs whose values are the class ids (what DatasetGAN and
``train.segmenter`` always read) and colour pictures in the class colours (what the studio exports
and most annotation tools save). Both are accepted; colours are snapped to the nearest class colour,
and a colour that is no class (a stray brush, another model's palette) is refused rather than guessed.
Every problem names its file, so a folder of 16 can be fixed in one go.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from editgan_core.photos import limits
from editgan_core.pipeline import InputError

SNAP_DISTANCE = 40.0  # RGB distance up to which a file's colour counts as a class colour (light compression)
MAX_LABEL_FILE_BYTES = 64 * 2**20
GREY_MODES = ("L", "I", "I;16", "I;16B", "I;16L")


class LabelFileError(InputError):
    """A label map (or a set of them) that cannot be used; the message names the files and why."""


@dataclass(frozen=True)
class LabelPicture:
    """A label map read from a file: class ids at the file's size and how they were stored."""

    ids: np.ndarray  # (H, W) uint8
    kind: str  # "grey ids" or "colours"


def _grey_ids(values: np.ndarray, num_classes: int) -> np.ndarray:
    top = int(values.max()) if values.size else 0
    if values.min() < 0 or top >= num_classes:
        raise LabelFileError(f"grey value {top} is no class id (this model has ids 0..{num_classes - 1})")
    return values.astype(np.uint8)


def snap_colours(rgb: np.ndarray, palette: np.ndarray, threshold: float = SNAP_DISTANCE) -> np.ndarray:
    """(H, W, 3) colours -> (H, W) class ids; a colour farther than ``threshold`` from every class is refused.

    Distances are computed once per distinct colour, so a large map costs little more than a scan.
    """
    colours, inverse, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True, return_counts=True)
    diff = colours[:, None, :].astype(np.float32) - np.asarray(palette, np.float32)[None]
    dist = np.sqrt((diff**2).sum(-1))
    nearest = dist.argmin(1)
    far = dist[np.arange(len(colours)), nearest] > threshold
    if far.any():
        worst = np.flatnonzero(far)[np.argsort(-counts[far])][:3]
        listed = ", ".join(f"{tuple(int(v) for v in colours[i])} at {int(counts[i])} pixel(s)" for i in worst)
        raise LabelFileError(f"{int(counts[far].sum())} pixel(s) in colours that are no class of this model "
                             f"({listed}); paint with the class colours or save grey class ids")
    return nearest[inverse.reshape(-1)].reshape(rgb.shape[:2]).astype(np.uint8)


def label_ids(picture: Image.Image, palette: np.ndarray) -> LabelPicture:
    """A decoded label picture as class ids: grey modes are ids; colour pictures are snapped to ``palette``.

    An RGB picture whose pixels are all grey and below the class count is a grey-id map saved as RGB.
    A palette ('P') picture is read by its colours, or by its indices when the colours are no classes.
    """
    num_classes = len(palette)
    if picture.mode in GREY_MODES:
        return LabelPicture(_grey_ids(np.asarray(picture), num_classes), "grey ids")
    rgb = np.asarray(picture.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all() and rgb.max() < num_classes:
        return LabelPicture(rgb[..., 0].copy(), "grey ids")
    try:
        return LabelPicture(snap_colours(rgb, palette), "colours")
    except LabelFileError:
        if picture.mode == "P" and int(np.asarray(picture).max()) < num_classes:
            return LabelPicture(np.asarray(picture).astype(np.uint8), "grey ids")
        raise


def open_bounded(path: Path, what: str = "image") -> Image.Image:
    """Open an image file with its size and pixel count checked before it is decoded."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LabelFileError(f"cannot read the {what}: {exc.strerror or exc}") from exc
    if size > MAX_LABEL_FILE_BYTES:
        raise LabelFileError(f"the {what} is {size / 2**20:.0f} MiB; the limit is {MAX_LABEL_FILE_BYTES // 2**20} MiB")
    try:
        picture = Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        raise LabelFileError(f"the {what} is not a readable picture ({exc})") from exc
    if picture.width * picture.height > limits.MAX_INPUT_PIXELS:
        raise LabelFileError(f"the {what} is {picture.width}x{picture.height}; the limit is "
                             f"{limits.MAX_INPUT_PIXELS // 1_000_000} MP")
    return picture


def fit_labels(ids: np.ndarray, size: int) -> np.ndarray:
    """Class ids at the picture's size -> the model's: the same centre square ``prepare_image`` crops, nearest."""
    h, w = ids.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(ids[top:top + side, left:left + side])
    return np.asarray(square.resize((size, size), Image.Resampling.NEAREST))


def read_label_file(path: Path, palette: np.ndarray, image_size: tuple[int, int] | None = None) -> LabelPicture:
    """Read and check one label file; ``image_size`` (W, H) is the size its picture has, which it must match."""
    picture = open_bounded(path, "label map")
    if image_size is not None and picture.size != tuple(image_size):
        raise LabelFileError(f"the label map is {picture.width}x{picture.height} but its image is "
                             f"{image_size[0]}x{image_size[1]}; they must be the same size")
    try:
        picture.load()
    except OSError as exc:
        raise LabelFileError(f"the label map cannot be decoded ({exc})") from exc
    return label_ids(picture, palette)


def bad_files_message(problems: list[tuple[str, str]], total: int) -> str:
    """One message naming every unusable file and why."""
    lines = "\n".join(f"- {name}: {why}" for name, why in problems)
    return f"{len(problems)} of {total} annotation file(s) cannot be used; nothing was embedded or trained:\n{lines}"
