"""Suggestions that spare most of the painting: regions from the generator's own features, or the segmenter's map.

DatasetGAN's observation: pixels of one semantic part have similar synthesis features, so clustering
the per-pixel feature vectors splits an image into parts without any label. The user then names a
whole region with one click and corrects the edges with the brush. Per-pixel vectors of all maps
would be d x H x W floats (gigabytes at 1024 px), so each map is first reduced at its own resolution
to its few principal directions (a linear map, which commutes with the upsampling), scaled so every
map weighs the same, and only those few channels are upsampled. k-means (OpenCV's) is fitted on a
bounded random subset of pixels and then assigns every pixel in blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_REGIONS = 24
DIMS_PER_MAP = 8  # principal directions kept per feature map
MAX_SIDE = 256  # larger images are clustered at this side and the regions enlarged (memory: side² x dims)
MAX_FIT_PIXELS = 20_000  # k-means is fitted on at most this many pixels
ASSIGN_BLOCK = 65_536  # pixels assigned to their nearest centre at once


@dataclass
class Suggestion:
    """Regions to name with one click, and the label map to start from (None: start blank)."""

    regions: np.ndarray  # (H, W) int32 region ids 0..R-1
    labels: np.ndarray | None  # (H, W) uint8: the segmenter's prediction when the model has one
    source: str  # "feature clusters" or "segmentation branch"


def reduced_map(feature: torch.Tensor, dims: int) -> torch.Tensor:
    """(1, c, h, w) -> (1, k, h, w): the map's top-k principal components, scaled to total variance 1."""
    c, h, w = feature.shape[1:]
    x = feature[0].reshape(c, h * w).double()
    x = x - x.mean(1, keepdim=True)
    if h * w < 2:
        return torch.zeros(1, min(dims, c), h, w)
    values, vectors = torch.linalg.eigh(x @ x.T / (h * w - 1))
    k = min(dims, c)
    top = vectors[:, -k:].flip(1)
    projected = top.T @ x  # (k, h*w)
    scale = values[-k:].clamp_min(0).sum().clamp_min(1e-12).sqrt()
    return (projected / scale).reshape(1, k, h, w).float()


def pixel_features(features: Sequence[torch.Tensor], size: int, dims: int = DIMS_PER_MAP) -> np.ndarray:
    """(size*size, sum of kept dims) float32: every map reduced at its resolution, then upsampled."""
    maps = [F.interpolate(reduced_map(f.detach().cpu(), dims), size=(size, size), mode="bilinear",
                          align_corners=False) for f in features]
    stacked = torch.cat(maps, 1)[0]
    return stacked.reshape(stacked.shape[0], -1).T.contiguous().numpy().astype(np.float32)


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    out = np.empty(len(points), np.int32)
    c2 = (centres**2).sum(1)
    for start in range(0, len(points), ASSIGN_BLOCK):
        block = points[start:start + ASSIGN_BLOCK]
        out[start:start + len(block)] = (c2[None] - 2 * block @ centres.T).argmin(1)
    return out


def cluster_pixels(points: np.ndarray, regions: int, seed: int = 0) -> np.ndarray:
    """k-means labels (N,) of (N, D) points, fitted on at most ``MAX_FIT_PIXELS`` of them."""
    rng = np.random.default_rng(seed)
    fit = points if len(points) <= MAX_FIT_PIXELS else points[rng.choice(len(points), MAX_FIT_PIXELS, replace=False)]
    k = max(1, min(int(regions), len(fit)))
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    _, _, centres = cv2.kmeans(np.ascontiguousarray(fit), k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    return _nearest(points, centres)


def renumber(regions: np.ndarray) -> np.ndarray:
    """Region ids in reading order (the top-left region is 0), so the same image always numbers alike."""
    _, first = np.unique(regions.ravel(), return_index=True)
    order = np.unique(regions.ravel())[np.argsort(first)]
    lookup = np.zeros(int(regions.max()) + 1, np.int32)
    lookup[order] = np.arange(len(order), dtype=np.int32)
    return lookup[regions]


def regions_from_features(features: Sequence[torch.Tensor], size: int, regions: int = DEFAULT_REGIONS,
                          seed: int = 0) -> np.ndarray:
    """(size, size) region ids from the synthesis feature maps of one image (clustered at most ``MAX_SIDE``)."""
    side = min(size, MAX_SIDE)
    found = cluster_pixels(pixel_features(features, side), regions, seed).reshape(side, side)
    if side != size:
        found = cv2.resize(found, (size, size), interpolation=cv2.INTER_NEAREST)
    return renumber(found)


@torch.no_grad()
def suggest(pipeline, latent: torch.Tensor, regions: int = DEFAULT_REGIONS, seed: int = 0) -> Suggestion:
    """Regions from the features; with a segmentation branch, its prediction as the starting label map too."""
    latent = pipeline.check_latent(latent)
    out = pipeline.generator.synthesis(latent, noise=pipeline.noise, return_features=True)
    found = regions_from_features(out.features, pipeline.resolution, regions, seed)
    if pipeline.segmenter is None:
        return Suggestion(found, None, "feature clusters")
    labels = pipeline.segmenter.predict(out.features)[0].to(torch.uint8).cpu().numpy()
    return Suggestion(found, labels, "segmentation branch")


def assign_region(labels: np.ndarray, regions: np.ndarray, y: int, x: int, class_id: int) -> np.ndarray:
    """The label map with the whole region under (y, x) set to ``class_id`` (one click)."""
    out = np.array(labels, dtype=np.uint8, copy=True)
    out[regions == regions[y, x]] = class_id
    return out


def fill_connected(labels: np.ndarray, y: int, x: int, class_id: int) -> np.ndarray:
    """The label map with the 4-connected area of one class under (y, x) set to ``class_id`` (a bucket fill)."""
    out = np.array(labels, dtype=np.uint8, copy=True)
    mask = np.zeros((out.shape[0] + 2, out.shape[1] + 2), np.uint8)
    cv2.floodFill(out, mask, (int(x), int(y)), int(class_id), 0, 0, 4)
    return out


def region_purity(regions: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pixels whose region, given its majority true class, is already right."""
    regions = np.asarray(regions).ravel().astype(np.int64)
    truth = np.asarray(truth).ravel().astype(np.int64)
    classes = int(truth.max()) + 1
    counts = np.bincount(regions * classes + truth, minlength=(int(regions.max()) + 1) * classes)
    return float(counts.reshape(-1, classes).max(1).sum() / truth.size)
