"""Label maps <-> pictures in the class colours, including reading back what the user painted.

The browser hands back colours, not class ids: brush edges are anti-aliased and a canvas may be
scaled, so painted colours are snapped to the nearest class colour. A colour that is far from every
class (and is not an edge blend of two neighbouring classes) is refused and counted, so the caller
can tell the user instead of silently guessing a class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

SNAP_DISTANCE = 40.0  # RGB distance up to which a colour counts as a class colour
STROKE_ALPHA = 128  # layer pixels at least this opaque are strokes; fainter ones are brush fringes
BLEND_WINDOW = 5  # an edge blend must have both of its classes within this window


@dataclass
class PaintResult:
    """Labels read from a painted map: the new map, which pixels the user changed and what was refused."""

    labels: np.ndarray  # (H, W) uint8 class ids at model resolution
    changed: np.ndarray  # (H, W) bool: differs from the map the user started from
    far: np.ndarray  # (H, W) bool: painted in a colour that is no class (left unchanged)

    @property
    def changed_pixels(self) -> int:
        return int(self.changed.sum())

    @property
    def far_pixels(self) -> int:
        return int(self.far.sum())


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 picture in the class colours."""
    return np.asarray(palette, dtype=np.uint8)[np.asarray(labels, dtype=np.intp)]


def upscale(picture: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so a small label map stays crisp on a larger canvas."""
    if factor == 1:
        return picture
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, opacity: float) -> np.ndarray:
    """The photo with its label colours blended on top (opacity 0 = photo, 1 = label map)."""
    opacity = float(np.clip(opacity, 0.0, 1.0))
    mixed = (1.0 - opacity) * image.astype(np.float32) + opacity * colorize(labels, palette).astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def outline(image: np.ndarray, mask: np.ndarray, color: Sequence[int] = (0, 255, 255), dim: float = 0.45) -> np.ndarray:
    """Show a region on an image: outside dimmed, border drawn in ``color``."""
    out = image.astype(np.float32)
    out[~mask] *= dim
    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    out[edge] = color
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def editor_value(labels: np.ndarray, palette: np.ndarray, factor: int = 1) -> dict[str, object]:
    """A ``gr.ImageEditor`` value showing the label map as an opaque RGBA background, no strokes."""
    rgb = upscale(colorize(labels, palette), factor)
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    return {"background": rgba, "layers": [], "composite": rgba.copy()}


# ----------------------------------------------------------------------------------------------- snapping


def _distances(colors: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(N, 3) colours x (C, 3) palette -> (N, C) Euclidean RGB distances."""
    diff = colors[:, None, :].astype(np.float32) - palette[None, :, :].astype(np.float32)
    return np.sqrt(np.einsum("ncd,ncd->nc", diff, diff))


def snap_colors(colors: np.ndarray, palette: np.ndarray,
                threshold: float = SNAP_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """Nearest class for each (N, 3) colour; returns (class ids, ok) with ok False beyond ``threshold``."""
    colors = np.asarray(colors).reshape(-1, 3)
    if colors.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    dist = _distances(colors, palette)
    ids = dist.argmin(axis=1)
    return ids, dist[np.arange(len(ids)), ids] <= threshold


def _snap_blends(colors: np.ndarray, allowed: np.ndarray, palette: np.ndarray,
                 threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Colours that lie between two class colours (anti-aliased edges) -> the nearer of the two.

    ``allowed`` (N, C) says which classes are present next to each pixel; a blend is accepted only
    when both of its classes are, so a solid stroke of an unrelated colour is still refused.
    """
    pal = palette.astype(np.float32)
    c = colors.astype(np.float32)
    n, k = len(c), len(pal)
    best_d = np.full(n, np.inf, np.float32)
    best_id = np.zeros(n, np.int64)
    for a in range(k):
        for b in range(a + 1, k):
            pair_ok = allowed[:, a] & allowed[:, b]
            if not pair_ok.any():
                continue
            seg = pal[b] - pal[a]
            t = np.clip(((c - pal[a]) @ seg) / max(float(seg @ seg), 1e-6), 0.0, 1.0)
            d = np.linalg.norm(c - (pal[a] + t[:, None] * seg), axis=1)
            d[~pair_ok] = np.inf
            better = d < best_d
            best_d[better] = d[better]
            best_id[better] = np.where(t[better] < 0.5, a, b)
    return best_id, best_d <= threshold


def snap_image(rgb: np.ndarray, palette: np.ndarray, threshold: float = SNAP_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """A painted picture (H, W, 3) -> (class ids (H, W), far mask (H, W)); far pixels get id 0."""
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3])
    h, w = rgb.shape[:2]
    palette = np.asarray(palette, dtype=np.uint8)
    ids, ok = snap_colors(rgb.reshape(-1, 3), palette, threshold)
    ids, ok = ids.reshape(h, w), ok.reshape(h, w)
    if not ok.all():
        # Classes present around each pixel (among pixels that snapped directly).
        kernel = np.ones((BLEND_WINDOW, BLEND_WINDOW), np.uint8)
        present = np.stack([cv2.dilate(((ids == k) & ok).astype(np.uint8), kernel) for k in range(len(palette))],
                           axis=-1).astype(bool)
        far_idx = np.flatnonzero(~ok)
        blend_ids, blend_ok = _snap_blends(rgb.reshape(-1, 3)[far_idx], present.reshape(-1, len(palette))[far_idx],
                                           palette, threshold)
        ids.flat[far_idx[blend_ok]] = blend_ids[blend_ok]
        ok.flat[far_idx[blend_ok]] = True
    ids[~ok] = 0
    return ids.astype(np.uint8), ~ok


def downsample_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Class ids at a canvas resolution -> ``size`` x ``size`` (majority vote per cell, nearest otherwise)."""
    h, w = labels.shape
    if (h, w) == (size, size):
        return labels
    if h % size == 0 and w % size == 0 and h // size == w // size:
        f = h // size
        cells = labels.reshape(size, f, size, f).transpose(0, 2, 1, 3).reshape(size, size, f * f)
        n_classes = int(labels.max()) + 1
        counts = np.stack([(cells == k).sum(axis=2) for k in range(n_classes)], axis=-1)
        return counts.argmax(axis=-1).astype(np.uint8)
    return cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)


def _any_in_cell(mask: np.ndarray, size: int) -> np.ndarray:
    """A canvas-resolution mask -> model resolution: a cell counts when any of it is set."""
    if mask.shape == (size, size):
        return mask
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0


def _as_rgba(picture: np.ndarray | None) -> np.ndarray | None:
    if picture is None:
        return None
    picture = np.asarray(picture)
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=2)
    if picture.shape[2] == 3:
        picture = np.concatenate([picture, np.full((*picture.shape[:2], 1), 255, picture.dtype)], axis=2)
    return picture.astype(np.uint8)


def read_painting(value: Mapping[str, object] | np.ndarray, base_labels: np.ndarray, palette: np.ndarray,
                  threshold: float = SNAP_DISTANCE) -> PaintResult:
    """What the user painted, as class ids at the resolution of ``base_labels``.

    ``value`` is a ``gr.ImageEditor`` value (background/layers/composite, RGBA arrays at any size that
    is a multiple of the map) or just an edited label-map picture. Strokes in the layers win; without
    strokes the composite (or picture) is read, and only where it differs from the starting map.
    """
    size = base_labels.shape[0]
    palette = np.asarray(palette, dtype=np.uint8)
    if isinstance(value, Mapping):
        layers = [_as_rgba(layer) for layer in (value.get("layers") or []) if layer is not None]
        composite = _as_rgba(value.get("composite"))
    else:
        layers, composite = [], _as_rgba(value)
    reference = layers[0] if layers else composite
    if reference is None:
        none = np.zeros_like(base_labels, dtype=bool)
        return PaintResult(base_labels.astype(np.uint8).copy(), none, none)
    h, w = reference.shape[:2]
    base_hr = cv2.resize(base_labels.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)

    stroke = np.zeros((h, w), bool)
    painted = np.zeros((h, w, 3), np.uint8)
    for layer in layers:  # later layers are on top
        if layer.shape[:2] != (h, w):
            continue
        mask = layer[..., 3] >= STROKE_ALPHA
        painted[mask] = layer[..., :3][mask]
        stroke |= mask
    if not stroke.any() and composite is not None:
        composite = cv2.resize(composite, (w, h), interpolation=cv2.INTER_NEAREST) if composite.shape[:2] != (h, w) \
            else composite
        start = colorize(base_hr, palette)
        stroke = (composite[..., 3] > 0) & (np.abs(composite[..., :3].astype(np.int16) - start).max(axis=2) > 2)
        painted = composite[..., :3]
    if not stroke.any():
        none = np.zeros_like(base_labels, dtype=bool)
        return PaintResult(base_labels.astype(np.uint8).copy(), none, none)

    # Snap the whole picture (strokes plus the untouched map around them), so edge blends can see
    # which classes they sit between; then keep the result only where the user painted.
    picture = np.where(stroke[..., None], painted, colorize(base_hr, palette))
    ids, far_hr = snap_image(picture, palette, threshold)
    far_hr &= stroke
    labels_hr = np.where(stroke & ~far_hr, ids, base_hr).astype(np.uint8)
    labels = downsample_labels(labels_hr, size)
    far = _any_in_cell(far_hr, size)
    return PaintResult(labels, labels != base_labels, far)
