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

from editgan_core.pipeline import InputError

SNAP_DISTANCE = 40.0  # RGB distance up to which a colour counts as a class colour
STROKE_ALPHA = 128  # layer pixels at least this opaque are strokes; fainter ones are brush fringes
BLEND_WINDOW = 5  # an edge blend must have both of its classes within this window
MAX_PAINT_SIDE = 2048  # pixels a side of any painted map, checked before it is decoded
MIN_PAINT_LIMIT = 512  # a model's painted maps may be this large a side, or twice its resolution if more
MAX_PAINT_LAYERS = 4  # the page's editor has one layer of strokes
SNAP_CHUNK = 16384  # distinct colours compared with the palette at once
PIXEL_CHUNK = 1 << 18  # pixels whose distinct colours are found at once
BLEND_VALUES = 1 << 20  # floats per array while colours are measured against every pair of classes


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
#
# A painted map has few distinct colours, so colours are snapped once per distinct colour (24-bit codes),
# in integer arithmetic and in chunks: memory grows with the pixels by a few bytes each, never by
# pixels x classes x channels.


def paint_limit(resolution: int) -> int:
    """The largest painted map (pixels a side) read for a model: the page's canvas is 256 px a side, or the
    model's resolution where that is larger, so twice that leaves room for any scaling a browser does."""
    return min(MAX_PAINT_SIDE, max(MIN_PAINT_LIMIT, 2 * int(resolution)))


def check_picture_size(width: int, height: int, limit: int = MAX_PAINT_SIDE,
                       what: str = "the painted label map") -> None:
    """Refuse a picture larger than ``limit`` pixels a side before any work is done on it."""
    if width > limit or height > limit or width < 1 or height < 1:
        raise InputError(f"{what} is {width}x{height} pixels; the limit is {limit}x{limit}")


def _as_uint8_colors(colors: np.ndarray) -> np.ndarray:
    colors = np.asarray(colors).reshape(-1, 3)
    if colors.dtype == np.uint8:
        return colors
    return np.clip(np.rint(colors), 0, 255).astype(np.uint8)


def _nearest(colors: np.ndarray, palette: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) uint8 colours -> nearest palette index and whether it is within ``threshold`` (chunked)."""
    pal = palette.astype(np.int32)[None]
    limit = int(np.floor(threshold * threshold))
    ids = np.empty(len(colors), np.uint8)
    ok = np.empty(len(colors), bool)
    for lo in range(0, len(colors), SNAP_CHUNK):
        diff = colors[lo:lo + SNAP_CHUNK, None, :].astype(np.int32) - pal
        d2 = np.einsum("ncd,ncd->nc", diff, diff)
        ids[lo:lo + SNAP_CHUNK] = best = d2.argmin(axis=1)
        ok[lo:lo + SNAP_CHUNK] = d2[np.arange(len(best)), best] <= limit
    return ids, ok


def snap_colors(colors: np.ndarray, palette: np.ndarray,
                threshold: float = SNAP_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """Nearest class for each (N, 3) colour; returns (class ids, ok) with ok False beyond ``threshold``."""
    colors = _as_uint8_colors(colors)
    palette = np.asarray(palette, dtype=np.uint8)
    ids = np.zeros(len(colors), np.uint8)
    ok = np.zeros(len(colors), bool)
    for lo in range(0, len(colors), PIXEL_CHUNK):
        part = colors[lo:lo + PIXEL_CHUNK]
        codes = (part[:, 0].astype(np.uint32) << 16) | (part[:, 1].astype(np.uint32) << 8) | part[:, 2]
        distinct, inverse = np.unique(codes, return_inverse=True)
        rgb = np.stack([(distinct >> 16) & 255, (distinct >> 8) & 255, distinct & 255], axis=1).astype(np.uint8)
        near, within = _nearest(rgb, palette, threshold)
        ids[lo:lo + PIXEL_CHUNK], ok[lo:lo + PIXEL_CHUNK] = near[inverse], within[inverse]
    return ids, ok


def _snap_blends(colors: np.ndarray, allowed_bits: np.ndarray, palette: np.ndarray,
                 threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Colours that lie between two class colours (anti-aliased edges) -> the nearer of the two.

    ``allowed_bits`` (N, ceil(C / 8)) packs which classes are present next to each pixel; a blend is
    accepted only when both of its classes are, so a solid stroke of an unrelated colour is still refused.
    All class pairs are measured at once, a chunk of colours at a time.
    """
    pal = palette.astype(np.float32)
    k = len(pal)
    first, second = np.triu_indices(k, 1)
    seg = pal[second] - pal[first]  # (P, 3)
    seg_len2 = np.maximum((seg * seg).sum(axis=1), 1e-6)
    ids = np.zeros(len(colors), np.uint8)
    ok = np.zeros(len(colors), bool)
    if len(first) == 0:
        return ids, ok
    chunk = max(16, BLEND_VALUES // (3 * len(first)))
    for lo in range(0, len(colors), chunk):
        c = colors[lo:lo + chunk, None, :].astype(np.float32) - pal[first][None]  # (n, P, 3) from class a
        allowed = np.unpackbits(allowed_bits[lo:lo + chunk], axis=1, count=k, bitorder="little").astype(bool)
        t = np.clip(np.einsum("npd,pd->np", c, seg) / seg_len2, 0.0, 1.0)
        c -= t[..., None] * seg[None]
        d = np.sqrt(np.einsum("npd,npd->np", c, c))
        d[~(allowed[:, first] & allowed[:, second])] = np.inf
        best = d.argmin(axis=1)
        rows = np.arange(len(best))
        ids[lo:lo + chunk] = np.where(t[rows, best] < 0.5, first[best], second[best])
        ok[lo:lo + chunk] = d[rows, best] <= threshold
    return ids, ok


def _classes_near(ids: np.ndarray, ok: np.ndarray, where: np.ndarray, n_classes: int) -> np.ndarray:
    """For the flat pixel indices ``where``: which classes snapped directly within ``BLEND_WINDOW``,
    as packed bits (one class map dilated at a time, so memory is one map plus a bit per class)."""
    kernel = np.ones((BLEND_WINDOW, BLEND_WINDOW), np.uint8)
    bits = np.zeros((len(where), (n_classes + 7) // 8), np.uint8)
    for k in range(n_classes):
        near = cv2.dilate(((ids == k) & ok).astype(np.uint8), kernel).reshape(-1)[where]
        bits[:, k // 8] |= near << (k % 8)
    return bits


def snap_image(rgb: np.ndarray, palette: np.ndarray, threshold: float = SNAP_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """A painted picture (H, W, 3) -> (class ids (H, W), far mask (H, W)); far pixels get id 0."""
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3])
    h, w = rgb.shape[:2]
    palette = np.asarray(palette, dtype=np.uint8)
    ids, ok = snap_colors(rgb.reshape(-1, 3), palette, threshold)
    ids, ok = ids.reshape(h, w), ok.reshape(h, w)
    if not ok.all():
        far_idx = np.flatnonzero(~ok)
        blend_ids, blend_ok = _snap_blends(_as_uint8_colors(rgb).reshape(-1, 3)[far_idx],
                                           _classes_near(ids, ok, far_idx, len(palette)), palette, threshold)
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
        best = np.zeros((size, size), np.uint8)
        best_count = np.full((size, size), -1, np.int32)
        for k in np.unique(labels):  # one count map at a time: memory does not grow with the classes
            count = (cells == k).sum(axis=2, dtype=np.int32)
            more = count > best_count
            best[more], best_count[more] = k, count[more]
        return best
    return cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)


def _any_in_cell(mask: np.ndarray, size: int) -> np.ndarray:
    """A canvas-resolution mask -> model resolution: a cell counts when any of it is set."""
    if mask.shape == (size, size):
        return mask
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0


def _as_rgba(picture: np.ndarray | None, limit: int) -> np.ndarray | None:
    """A picture of the editor as (H, W, 4) uint8, after checking its size and shape."""
    if picture is None:
        return None
    picture = np.asarray(picture)
    if picture.ndim not in (2, 3) or (picture.ndim == 3 and picture.shape[2] not in (1, 3, 4)) \
            or picture.dtype.kind not in "uif":
        raise InputError("the painted label map is not a picture (expected an RGB or RGBA image)")
    check_picture_size(picture.shape[1], picture.shape[0], limit)
    if picture.ndim == 3 and picture.shape[2] == 1:
        picture = picture[..., 0]
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
    limit = paint_limit(size)
    palette = np.asarray(palette, dtype=np.uint8)
    if isinstance(value, Mapping):
        if len(value.get("layers") or []) > MAX_PAINT_LAYERS:
            raise InputError(f"the painted label map has {len(value['layers'])} layers; "
                             f"the limit is {MAX_PAINT_LAYERS}")
        layers = [_as_rgba(layer, limit) for layer in (value.get("layers") or []) if layer is not None]
        composite = _as_rgba(value.get("composite"), limit)
    else:
        layers, composite = [], _as_rgba(value, limit)
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
