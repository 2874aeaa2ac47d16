"""The strict benchmark's per-face measures and their confidence intervals, free of any model.

Kept apart from the runner so each rule (who has room to move, what counts as a success, which pixels a
persisting part's colour is read on) is a small function the tests pin down on synthetic arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import cv2
import numpy as np

Z95 = 1.959964  # two-sided 95 % normal quantile
MIN_PART_PIXELS = 3  # a part smaller than this (in both maps) has no meaningful mean colour at 64 px


def direction(value: float, low: float, high: float) -> float:
    """+1 when an edit towards ``value`` raises the attribute (value in the upper half of the range), else -1."""
    return 1.0 if value >= 0.5 * (low + high) else -1.0


def has_room(true_value: float, target: float, low: float, high: float, fraction: float) -> bool:
    """The face's drawn value is at least ``fraction`` of the range short of the target, in the edit's direction."""
    return direction(target, low, high) * (target - true_value) >= fraction * (high - low)


def moved(before: float, after: float, target: float, low: float, high: float, fraction: float) -> bool:
    """Success: the judged attribute moved towards the target by at least ``fraction`` of the range.

    Unlike the loose benchmark, being near the target already does not count: only faces with room to
    move are judged, and only the move is.
    """
    return direction(target, low, high) * (after - before) >= fraction * (high - low)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion: sound at 0 % and 100 %, unlike the normal one."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: Iterable[float], z: float = Z95) -> tuple[float, float]:
    """(mean, half-width of its normal 95 % interval); per-face means of ≥ 30 faces make the normal fine."""
    x = np.asarray(list(values), dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (float("nan"), float("nan"))
    half = z * x.std(ddof=1) / math.sqrt(len(x)) if len(x) > 1 else float("inf")
    return (float(x.mean()), float(half))


def entanglement(before: Mapping[str, float], after: Mapping[str, float], ranges: Mapping[str, Sequence[float]],
                 edited: str) -> dict[str, float]:
    """Signed change of every other judged attribute, as a fraction of its range (systematic side effects
    survive the mean over faces; the judge's noise averages out)."""
    return {name: (after[name] - before[name]) / (high - low)
            for name, (low, high) in ranges.items() if name != edited and name in before and name in after}


def persisting_masks(labels_before: np.ndarray, labels_target: np.ndarray,
                     min_pixels: int = MIN_PART_PIXELS) -> dict[int, np.ndarray]:
    """Per class, the pixels it covers both before and after the true edit: where its colour should not move."""
    same = labels_before == labels_target
    out = {}
    for c in np.unique(labels_before[same]).tolist():
        mask = same & (labels_before == c)
        if mask.sum() >= min_pixels:
            out[int(c)] = mask
    return out


def colour_drift(before: np.ndarray, after: np.ndarray, masks: Mapping[int, np.ndarray]) -> dict[int, float]:
    """Per class, the largest per-channel move of its mean colour, as a fraction of 0..255."""
    b, a = before.astype(np.float64), after.astype(np.float64)
    return {c: float(np.abs(a[m].mean(0) - b[m].mean(0)).max() / 255.0) for c, m in masks.items()}


def true_region(labels_before: np.ndarray, labels_target: np.ndarray, class_ids: Sequence[int],
                dilate: int = 1) -> np.ndarray:
    """The pixels the true edit may touch: changed pixels and the edited parts in both maps, dilated."""
    region = (labels_before != labels_target) | np.isin(labels_before, class_ids) | np.isin(labels_target, class_ids)
    if dilate and region.any():
        region = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=dilate).astype(bool)
    return region


def outside_change(before: np.ndarray, after: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute pixel change outside ``region`` (0..1 units)."""
    diff = np.abs(after.astype(np.float32) - before.astype(np.float32)).mean(2) / 255.0
    return float(diff[~region].mean()) if (~region).any() else 0.0


def identity_loss(before: Mapping[str, float], after: Mapping[str, float],
                  ranges: Mapping[str, Sequence[float]]) -> float:
    """Mean absolute change of the appearance attributes (fraction of their ranges): 0 keeps the person."""
    return float(np.mean([abs(after[n] - before[n]) / (hi - lo) for n, (lo, hi) in ranges.items()]))
