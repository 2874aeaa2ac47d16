"""mIoU of the segmentation branch on held-out images: embed each image, segment, compare."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from tqdm import tqdm


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


def evaluate_domain_miou(pipeline, domain, seeds: Iterable[int], embed_steps: int = 50,
                         progress: bool = True) -> dict:
    """Embed rendered faces (true label maps known), segment the embedding, return IoU figures."""
    num_classes = len(pipeline.bundle.classes)
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    psnrs = []
    seeds = list(seeds)
    for seed in tqdm(seeds, desc="mIoU", unit="img", disable=not progress):
        sample = domain.render_face(seed, pipeline.resolution)
        result = pipeline.embed(sample.image, steps=embed_steps)
        conf += confusion(result.render.labels, sample.labels, num_classes)
        psnrs.append(result.psnr)
    ious = iou_per_class(conf)
    names = [c.name for c in pipeline.bundle.classes]
    return {"miou": float(np.nanmean(ious)), "per_class": dict(zip(names, ious.tolist(), strict=True)),
            "images": len(seeds), "embed_steps": embed_steps, "psnr": float(np.mean(psnrs))}
