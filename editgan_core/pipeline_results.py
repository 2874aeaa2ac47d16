"""What the pipeline hands back (renders, embeddings, edits) and the error it raises for bad user input.

Kept apart from ``pipeline`` so the facade's file stays about its behaviour; ``editgan_core.pipeline``
re-exports every name, which is where callers import them from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from editgan_core.editing import region_iou
from editgan_core.fidelity import FidelityReport


class InputError(ValueError):
    """Bad user input (image, label map, latent); the message is meant for the user."""


class SegmenterMissingError(InputError):
    """The action needs a segmentation branch, which this bundle does not have yet (see ``capabilities``)."""


@dataclass
class Render:
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray | None  # (H, W) uint8


@dataclass
class EmbedResult:
    latent: torch.Tensor
    render: Render
    psnr: float
    steps_done: int
    stopped: bool
    fidelity: FidelityReport | None = None


@dataclass
class EditResult:
    """Outcome of learning or refining an edit."""

    delta: torch.Tensor  # δw+ (n_latent, style_dim) relative to the input latent
    latent: torch.Tensor  # input latent + δ
    render: Render
    region: np.ndarray  # (H, W) bool
    class_ids: list[int]
    metrics: dict[str, float] = field(default_factory=dict)
    steps_done: int = 0
    stopped: bool = False


@dataclass
class SharedEditResult:
    """One δw+ learned on several images (``learn_shared_edit``), with their mean figures."""

    delta: torch.Tensor  # (n_latent, style_dim)
    class_ids: list[int]
    metrics: dict[str, float] = field(default_factory=dict)
    steps_done: int = 0
    stopped: bool = False
    layers: tuple[int, int] | None = None  # W+ rows δ was restricted to (None: all)


def edit_metrics(before: Render, after: Render, region: np.ndarray, target_labels: np.ndarray,
                 class_ids: Sequence[int]) -> dict[str, float]:
    """Region IoU with the target labels and mean pixel change (0..1) outside and inside the region."""
    diff = np.abs(after.image.astype(np.float32) - before.image.astype(np.float32)).mean(axis=2) / 255.0
    outside = ~region
    return {
        "region_iou": region_iou(after.labels, target_labels, region, class_ids),
        "change_outside": float(diff[outside].mean()) if outside.any() else 0.0,
        "change_inside": float(diff[region].mean()) if region.any() else 0.0,
        "region_fraction": float(region.mean()),
    }
