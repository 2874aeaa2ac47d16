"""A shared vector's default strength, chosen on the painted faces it was learned from.

The shared objective weighs the painted change against keeping every face's pixels outside its region,
over all the faces at once, so the δ it finds is shorter than the change the paintings ask for: at
strength 1 it reaches the painted labels on few of its own faces, and on new faces it moves the part
less than the user meant. The strength at which the bundle's segmenter best reads the paintings back on
those faces (mean region IoU) is a better default, and it needs nothing but what the user painted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from editgan_core.editing import edit_region, region_iou

STRENGTHS = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)  # the scale slider's useful span; 1 is the plain δ


@torch.no_grad()
def calibrate_strength(pipeline, latents: torch.Tensor, painted: Sequence[np.ndarray], class_ids: Sequence[int],
                       delta: torch.Tensor, strengths: Sequence[float] = STRENGTHS) -> tuple[float, dict[str, float]]:
    """The strength in ``strengths`` whose edit best matches the paintings on their own faces (the smallest
    among equals), and every strength's mean region IoU (keys as text, for a vector's metadata)."""
    if len(latents) != len(painted) or not len(painted):
        raise ValueError(f"need one painted label map per latent, got {len(latents)} and {len(painted)}")
    faces = []
    for latent, labels in zip(latents.split(1), painted, strict=True):
        before = pipeline.render(latent).labels.astype(np.int64)
        faces.append((latent, labels, edit_region(before, labels.astype(np.int64), class_ids)))
    scores = {}
    for strength in strengths:
        ious = [region_iou(pipeline.render(latent + strength * delta).labels, labels, region, class_ids)
                for latent, labels, region in faces]
        scores[f"{strength:g}"] = round(float(np.mean(ious)), 4)
    best = max(scores.values())
    return next(float(s) for s in scores if scores[s] == best), scores
