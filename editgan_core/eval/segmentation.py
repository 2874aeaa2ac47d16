"""Confusion counts and per-class IoU of label maps (``eval.embedding`` reports them on embedded faces)."""

from __future__ import annotations

import numpy as np


def confusion(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = target class, columns = predicted class."""
    index = target.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel()
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU of each class (NaN where a class never occurs in target nor prediction)."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def shifted_miou(label_maps: list[np.ndarray], num_classes: int) -> tuple[float, np.ndarray]:
    """mIoU of the true maps against themselves moved by one pixel (up, down, left, right).

    A yardstick for small parts: a segmentation that is right but one pixel off scores this, so at
    64 px, where pupils and lips are a few pixels, it bounds what an embedding that is "close" earns.
    """
    conf = np.zeros((num_classes, num_classes), np.int64)
    for labels in label_maps:
        for shift in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            conf += confusion(np.roll(labels, shift, axis=(0, 1)), labels, num_classes)
    ious = iou_per_class(conf)
    return float(np.nanmean(ious)), ious
