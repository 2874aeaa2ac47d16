"""Refining an alignment with the model itself: embed the crop, find the eyes and mouth in its segmentation,
turn and scale the crop so they sit where the model puts them, repeat.

Where the model "puts them" is measured on the model's own samples (the mean centres of the landmark classes
over a few seeded renders), so part centres and the manifest's landmark definition need not coincide. It needs
an encoder, a segmentation branch and ``landmark_classes`` in the framing; rough clicks or a box are enough to
start from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from editgan_core.photos.align import Alignment, crop, fit_similarity
from editgan_core.photos.framing import LANDMARKS, Framing
from editgan_core.photos.workflow import AlignedPhoto

if TYPE_CHECKING:
    from editgan_core.pipeline import EditGANPipeline

REFERENCE_SAMPLES = 32
MIN_PIXELS = 3  # fewer pixels of a part than this: not found
_REFERENCE_CACHE: dict[tuple[int, str], dict[str, tuple[float, float]]] = {}


def class_centres(labels: np.ndarray, framing: Framing) -> dict[str, tuple[float, float]] | None:
    """Centres of the landmark classes in a label map (pixel corners at whole numbers); eyes are told apart by the
    side of the template's midline they lie on. None if a part is missing."""
    midline = (framing.target("left_eye")[0] + framing.target("right_eye")[0]) / 2
    ys, xs = np.indices(labels.shape)
    centres = {}
    for name in LANDMARKS:
        mask = np.isin(labels, framing.landmark_classes[name])
        if name != "mouth":
            mask &= (xs + 0.5 < midline) if name == "left_eye" else (xs + 0.5 >= midline)
        if mask.sum() < MIN_PIXELS:
            return None
        centres[name] = (float(xs[mask].mean() + 0.5), float(ys[mask].mean() + 0.5))
    return centres


def reference_centres(pipe: EditGANPipeline) -> dict[str, tuple[float, float]]:
    """Mean landmark-class centres over the model's own seeded samples (cached per pipeline)."""
    key = (id(pipe), pipe.bundle.id)
    if key not in _REFERENCE_CACHE:
        found = []
        for seed in range(REFERENCE_SAMPLES):
            labels = pipe.render(pipe.sample_latent(seed, truncation=0.7)).labels
            centres = class_centres(labels, pipe.bundle.framing)
            if centres is not None:
                found.append([centres[n] for n in LANDMARKS])
        if not found:
            raise ValueError(f"model '{pipe.bundle.id}' draws none of its landmark classes in its own samples")
        mean = np.mean(found, axis=0)
        _REFERENCE_CACHE[key] = {n: (float(x), float(y)) for n, (x, y) in zip(LANDMARKS, mean, strict=True)}
    return _REFERENCE_CACHE[key]


def can_refine(pipe: EditGANPipeline) -> bool:
    framing = pipe.bundle.framing
    return (framing.uses_landmarks and set(framing.landmark_classes) == set(LANDMARKS)
            and pipe.encoder is not None and pipe.segmenter is not None)


def measured_centres(pipe: EditGANPipeline, pixels: np.ndarray) -> Mapping[str, tuple[float, float]] | None:
    """The landmark-class centres of the model's encoding of ``pixels``."""
    with torch.no_grad():
        labels = pipe.render(pipe.encode(pixels)).labels
    return class_centres(labels, pipe.bundle.framing)


def refine_alignment(pipe: EditGANPipeline, aligned: AlignedPhoto, rounds: int = 2) -> AlignedPhoto:
    """``aligned`` corrected ``rounds`` times by the model's reading of its eyes and mouth (unchanged where the model
    finds no face)."""
    if not can_refine(pipe):
        raise ValueError("refining needs an encoder, a segmentation branch and landmark classes in the framing")
    reference = [reference_centres(pipe)[n] for n in LANDMARKS]
    framing = pipe.bundle.framing
    for _ in range(rounds):
        found = measured_centres(pipe, aligned.crop)
        if found is None:
            break
        a, b = fit_similarity([found[n] for n in LANDMARKS], reference)  # crop -> corrected crop
        old = aligned.alignment
        alignment = Alignment(a * old.a, a * old.b + b, old.size, old.photo_size)
        pixels = crop(aligned.photo.pixels, alignment, framing.padding, pipe.bundle.background)
        aligned = replace(aligned, alignment=alignment, crop=pixels, how=f"{aligned.how}, refined")
    return aligned
