"""Scores that training and the benchmarks share: per-class IoU of label maps, and how well held-out
renders embed and segment.

``train.segmenter --eval`` and ``eval.embedding`` report the same numbers, so both call this module.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from tqdm import tqdm

from editgan_core.losses import image_psnr
from editgan_core.pipeline import EditGANPipeline


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


def psnr_at(a: np.ndarray, b: np.ndarray, size: int) -> float:
    """PSNR of two uint8 pictures after area-resizing both to ``size``: bundles of different resolutions
    compared on the same amount of detail."""
    a, b = (cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in (a, b))
    return image_psnr(a, b)


def evaluate_embedding(pipeline: EditGANPipeline, domain, seeds: range, step_counts: list[int],
                       progress: bool = True, compare_size: int | None = None) -> dict[int, dict]:
    """Per step count: mean PSNR, mean seconds per image, mIoU and per-class IoU; with ``compare_size``
    also ``psnr_at``, the PSNR with reconstruction and render both resized to that size."""
    num_classes = len(pipeline.bundle.classes)
    names = [c.name for c in pipeline.bundle.classes]
    rows = {n: {"psnr": [], "psnr_at": [], "seconds": [], "conf": np.zeros((num_classes, num_classes), np.int64)}
            for n in step_counts}
    for seed in tqdm(seeds, desc="embed", unit="face", disable=not progress):
        face = domain.render_face(seed, pipeline.resolution)
        for steps in step_counts:
            start = time.perf_counter()
            result = pipeline.embed(face.image, steps=steps)
            rows[steps]["seconds"].append(time.perf_counter() - start)
            rows[steps]["psnr"].append(result.psnr)
            if compare_size:
                rows[steps]["psnr_at"].append(psnr_at(result.render.image, face.image, compare_size))
            if result.render.labels is not None:
                rows[steps]["conf"] += confusion(result.render.labels, face.labels, num_classes)
    report = {}
    for steps, r in rows.items():
        ious = iou_per_class(r["conf"]) if r["conf"].any() else np.full(num_classes, np.nan)
        report[steps] = {"psnr": float(np.mean(r["psnr"])), "seconds": float(np.mean(r["seconds"])),
                         "miou": float(np.nanmean(ious)) if r["conf"].any() else float("nan"),
                         "per_class": dict(zip(names, ious.tolist(), strict=True))}
        if compare_size:
            report[steps]["psnr_at"] = float(np.mean(r["psnr_at"]))
    return report
