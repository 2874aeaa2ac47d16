"""A folder of annotations (``NAME.png``, ``NAME.labels.png``, maybe ``NAME.latent.safetensors``), read whole.

This is the layout the annotation store writes and ``train.segmenter --annotations DIR`` reads. A
latent beside an image (a generated sample, or a photo the studio already embedded) spares its
embedding. Every file is opened and checked before any of them is used, and all the bad ones are named
together: a wrong colour in file 15 must not surface after 14 embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from editgan_core.annotation.labelfiles import (
    LabelFileError,
    bad_files_message,
    fit_labels,
    open_bounded,
    read_label_file,
)
from editgan_core.bundle import Bundle
from editgan_core.latents import LatentError, load_latent
from editgan_core.pipeline import InputError, prepare_image
from editgan_core.utils import IMAGE_SUFFIXES

LABELS_SUFFIX = ".labels.png"
PREVIEW_SUFFIX = ".preview.png"
LATENT_SUFFIX = ".latent.safetensors"
MAX_FOLDER_ANNOTATIONS = 1000


@dataclass
class Annotation:
    """One checked annotation at the model's resolution."""

    name: str
    image: np.ndarray  # (S, S, 3) uint8
    labels: np.ndarray  # (S, S) uint8 class ids
    latent: torch.Tensor | None  # (1, n_latent, style_dim) when the folder has it: no embedding needed
    kind: str  # how the label map was stored: "grey ids" or "colours"


def _image_beside(folder: Path, stem: str) -> Path | None:
    for suffix in sorted(IMAGE_SUFFIXES):
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _read_one(label_path: Path, bundle: Bundle) -> Annotation:
    stem = label_path.name[: -len(LABELS_SUFFIX)]
    image_path = _image_beside(label_path.parent, stem)
    if image_path is None:
        raise LabelFileError(f"no image {stem}.png/.jpg beside it")
    picture = open_bounded(image_path)
    labels = read_label_file(label_path, bundle.palette, picture.size)
    try:
        image = prepare_image(image_path, bundle.resolution)
    except InputError as exc:
        raise LabelFileError(f"its image {image_path.name}: {exc}") from exc
    latent = None
    latent_path = label_path.parent / f"{stem}{LATENT_SUFFIX}"
    if latent_path.is_file():
        try:
            latent = load_latent(latent_path, expect_bundle_id=bundle.id,
                                 expect_shape=bundle.manifest.get("latent_shape")).latent
        except LatentError as exc:
            raise LabelFileError(f"its latent {latent_path.name}: {exc}") from exc
    return Annotation(stem, image, fit_labels(labels.ids, bundle.resolution), latent, labels.kind)


def read_folder(folder: Path, bundle: Bundle) -> list[Annotation]:
    """Every ``*.labels.png`` of ``folder`` with its image (and latent), all checked first.

    Raises ``LabelFileError`` naming every unusable file when any is; nothing is returned half-read.
    """
    if not folder.is_dir():
        raise LabelFileError(f"{folder} is not a folder")
    label_files = sorted(folder.glob(f"*{LABELS_SUFFIX}"))
    if not label_files:
        raise LabelFileError(f"no *{LABELS_SUFFIX} annotations in {folder} (NAME.png with NAME{LABELS_SUFFIX} "
                             "in grey class ids or the class colours)")
    if len(label_files) > MAX_FOLDER_ANNOTATIONS:
        raise LabelFileError(f"{folder} has {len(label_files)} annotations; the limit is {MAX_FOLDER_ANNOTATIONS}")
    read, problems = [], []
    for path in label_files:
        try:
            read.append(_read_one(path, bundle))
        except LabelFileError as exc:
            problems.append((path.name, str(exc)))
    if problems:
        raise LabelFileError(bad_files_message(problems, len(label_files)))
    return read
