"""Reading generator feature maps at output pixels without upsampling whole maps.

The segmentation branch needs each output pixel's upsampled feature vector, or only a first-layer
projection of it. Bilinear and nearest upsampling are written here as index tables and per-pixel
taps (which map pixels, with which weights), so a pixel's value is a weighted sum of a few map
entries: exactly ``F.interpolate``'s value there, for any set of pixels and without the full-size
map.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

UPSAMPLE_MODES = ("bilinear", "nearest")

Features = Sequence[torch.Tensor]
Size = tuple[int, int]


def interp_table(out_len: int, in_len: int, mode: str, dtype: torch.dtype = torch.float32,
                 device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (i0, i1) and weight t of every output position along one axis.

    out[k] = (1 - t) * in[i0] + t * in[i1] reproduces ``F.interpolate(size=...)`` along that axis:
    ``bilinear`` with ``align_corners=False`` (half-pixel centres, clamped at the borders) or
    PyTorch's ``nearest`` (floor of k * in / out, t = 0). Cached: the edit and training loops ask
    for the same few tables every step; callers must not modify them.
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsample mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    return _interp_table(int(out_len), int(in_len), mode, dtype, torch.device(device or "cpu"))


@functools.lru_cache(maxsize=128)
def _interp_table(out_len: int, in_len: int, mode: str, dtype: torch.dtype,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dst = torch.arange(out_len, dtype=torch.float64, device=device)
    scale = in_len / out_len
    if mode == "nearest":
        i0 = (dst * scale).floor().long().clamp_(max=in_len - 1)
        return i0, i0, torch.zeros(out_len, dtype=dtype, device=device)
    src = ((dst + 0.5) * scale - 0.5).clamp_(min=0)
    i0 = src.floor().long().clamp_(max=in_len - 1)
    i1 = (i0 + 1).clamp_(max=in_len - 1)
    return i0, i1, (src - i0).to(dtype)


def interp_rows(x: torch.Tensor, i0: torch.Tensor, i1: torch.Tensor, t: torch.Tensor, mode: str) -> torch.Tensor:
    """Interpolate (B, s, w, K) along dim 1 with (a slice of) an ``interp_table``."""
    out = x[:, i0]
    return out if mode == "nearest" else out.lerp_(x[:, i1], t.view(1, -1, 1, 1))


def interp_columns(x: torch.Tensor, width: int, mode: str) -> torch.Tensor:
    """Interpolate (B, rows, w, K) along dim 2 to ``width``, exactly as ``F.interpolate`` does.

    The rows become a batch of 1-pixel-high images in channels-last layout, so this is one pass
    and the result is (B, rows, width, K) without a copy.
    """
    B, rows, w, K = x.shape
    image = x.reshape(B * rows, 1, w, K).permute(0, 3, 1, 2)
    out = F.interpolate(image, size=(1, width), mode=mode, align_corners=False if mode == "bilinear" else None)
    return out.permute(0, 2, 3, 1).reshape(B, rows, width, K)


def pixel_taps(y: torch.Tensor, x: torch.Tensor, map_size: Size, out_size: Size, mode: str,
               dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where output pixels (y, x) read a map of ``map_size``: rows, columns and weights, each (T, P).

    T = 4 bilinear corners, or 1 for nearest.
    """
    (h, w), (H, W) = map_size, out_size
    y0, y1, ty = (v[y] for v in interp_table(H, h, mode, dtype, y.device))
    x0, x1, tx = (v[x] for v in interp_table(W, w, mode, dtype, x.device))
    if mode == "nearest":
        return y0[None], x0[None], torch.ones(1, len(y), dtype=dtype, device=y.device)
    ys = torch.stack([y0, y0, y1, y1])
    xs = torch.stack([x0, x1, x0, x1])
    weight = torch.stack([(1 - ty) * (1 - tx), (1 - ty) * tx, ty * (1 - tx), ty * tx])
    return ys, xs, weight


def gather_rows(rows: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum_t weight[t, p] * rows[index[t, p]]: (P, c) from (N, c) rows and (T, P) taps, a tap at a time."""
    out = rows.index_select(0, index[0]).to(weight.dtype).mul_(weight[0, :, None])
    for t in range(1, len(index)):
        out.addcmul_(rows.index_select(0, index[t]).to(weight.dtype), weight[t, :, None])
    return out


def sample_map(feature: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Values (P, c) of one upsampled map at some pixels; ``index`` (T, P) is flat into (B, h, w).

    A channels-last map gathers whole feature vectors, many times faster than gathering every
    channel plane separately (which is what a contiguous NCHW map needs).
    """
    c = feature.shape[1]
    if feature.is_contiguous(memory_format=torch.channels_last) and not feature.is_contiguous():
        return gather_rows(feature.permute(0, 2, 3, 1).reshape(-1, c), index, weight)
    values = feature.transpose(0, 1).reshape(c, -1).index_select(1, index.flatten())  # a view for batch 1
    return (values.view(c, *index.shape).to(weight.dtype) * weight).sum(1).t()


def unflatten_pixels(pixels: torch.Tensor, out_size: Size) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat indices into (B, H, W) -> (b, y, x)."""
    H, W = out_size
    b, rest = pixels.div(H * W, rounding_mode="floor"), pixels.remainder(H * W)
    return b, rest.div(W, rounding_mode="floor"), rest.remainder(W)


def flat_pixels(pixels: torch.Tensor, batch: int, out_size: Size) -> torch.Tensor:
    """A boolean mask (B, H, W) or (H, W), or flat indices into (B, H, W), as flat indices."""
    H, W = out_size
    if pixels.dtype == torch.bool:
        if tuple(pixels.shape) not in ((batch, H, W), (H, W)) or (pixels.ndim == 2 and batch != 1):
            raise ValueError(f"pixel mask has shape {tuple(pixels.shape)}, expected ({batch}, {H}, {W})")
        return pixels.reshape(-1).nonzero().squeeze(1)
    if pixels.dtype.is_floating_point or pixels.dtype.is_complex:
        raise TypeError(f"pixels must be a bool mask or integer indices, got {pixels.dtype}")
    pixels = pixels.reshape(-1).long()
    if len(pixels) and (pixels.min() < 0 or pixels.max() >= batch * H * W):
        raise ValueError(f"pixel indices must lie in [0, {batch * H * W}) for {batch} image(s) of {H}x{W}")
    return pixels


def sample_features(features: Features, pixels: torch.Tensor, out_size: Size,
                    upsample: str = "bilinear") -> torch.Tensor:
    """The official per-pixel feature vectors (P, d), built for the given pixels only.

    Row p equals the upsampled, concatenated stack at pixel ``pixels[p]`` (flat into (B, H, W)),
    without building the stack. The pixel-subset logits and ``PixelBank`` batches read the maps
    with the same taps.
    """
    b, y, x = unflatten_pixels(pixels, out_size)
    taps: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
    columns = []
    for f in features:
        (h, w), dtype = f.shape[-2:], torch.promote_types(f.dtype, torch.float32)
        if (h, w, dtype) not in taps:
            ys, xs, weight = pixel_taps(y, x, (h, w), out_size, upsample, dtype)
            taps[h, w, dtype] = (b * (h * w) + ys * w + xs, weight)
        columns.append(sample_map(f, *taps[h, w, dtype]))
    return torch.cat(columns, 1)


class ProjectedRows:
    """The maps of one resolution projected by all members' first layers, (B, rows, w, N*h1).

    Rows are projected on demand and kept for a sliding window, so blocks of output rows (or of
    row-sorted pixels) that walk down the image project every source row once.
    """

    def __init__(self, maps: Sequence[torch.Tensor], weight: torch.Tensor, budget_bytes: int) -> None:
        self.maps, self.weight = maps, weight  # weight: (c_group, N*h1)
        B, _, self.h, self.w = maps[0].shape
        self.window = max(1, budget_bytes // (B * self.w * weight.shape[1] * weight.element_size()))
        self.start, self.stop, self.rows = 0, 0, None

    def project(self, s0: int, s1: int) -> torch.Tensor:
        slab = torch.cat([f[:, :, s0:s1] for f in self.maps], 1).to(self.weight.dtype)
        B, c, rows, w = slab.shape
        return (slab.permute(0, 2, 3, 1).reshape(-1, c) @ self.weight).view(B, rows, w, -1)

    def __call__(self, s0: int, s1: int) -> torch.Tensor:
        if self.rows is None or not (self.start <= s0 and s1 <= self.stop):
            keep = self.rows[:, s0 - self.start:] if self.start <= s0 < self.stop else None
            begin = self.stop if keep is not None else s0
            stop = min(self.h, max(s1, begin + self.window))
            new = self.project(begin, stop)
            self.rows = new if keep is None else torch.cat([keep, new], 1)
            self.start, self.stop = s0, stop
        return self.rows[:, s0 - self.start:s1 - self.start]


@dataclass(frozen=True)
class MapTaps:
    """Where every requested pixel reads the maps of one resolution."""

    size: Size
    maps: tuple[int, ...]  # feature indices of this resolution
    index: torch.Tensor  # (T, P) flat into (B, h, w)
    weight: torch.Tensor  # (T, P) interpolation weights
    project_first: bool  # fewer map pixels than requested pixels: project the maps, then gather


class PixelTaps:
    """The taps of a fixed set of output pixels into each map resolution, worked out once.

    An edit asks for the same region's pixels at every step; at 64 px rebuilding the taps and
    walking the maps block by block cost more than the arithmetic itself.
    """

    def __init__(self, pixels: torch.Tensor, batch: int, out_size: Size, map_sizes: Sequence[Size], mode: str,
                 dtype: torch.dtype) -> None:
        self.count = len(pixels)
        b, y, x = unflatten_pixels(pixels, out_size)
        by_size: dict[Size, list[int]] = {}
        for j, size in enumerate(map_sizes):
            by_size.setdefault(size, []).append(j)
        self.groups = []
        for (h, w), maps in by_size.items():
            ys, xs, weight = pixel_taps(y, x, (h, w), out_size, mode, dtype)
            self.groups.append(MapTaps((h, w), tuple(maps), b * (h * w) + ys * w + xs, weight,
                                       batch * h * w < self.count))
