"""EditGAN's segmentation branch: an ensemble of DatasetGAN pixel MLPs over generator features.

Each member classifies one pixel from the generator's feature maps, upsampled to the output
resolution and concatenated (d = sum of the map widths: 6016 for config F at 512 px); the ensemble's
logits are the mean of its members' logits (Zhang et al. 2021, Ling et al. 2021).

The official code builds that (d x H x W) stack, 5.9 GiB per image at 512 px. Here it never
exists: the first linear layer is per pixel, so it commutes with the (linear) upsampling, and runs
as a 1x1 projection of every feature map at the map's own resolution. Only the projected
(members * hidden) channels are upsampled and summed, a few rows at a time for full images, or
only at the requested pixels for the edit region. ``forward_reference`` is the official
formulation, kept as the definition the tests compare against.

    python -m editgan_core.models.segmenter --bench-memory     # peak extra memory at 1024 px
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import gc
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from editgan_core.models.checkpoint import CheckpointError, load_checked, read_torch_file
from editgan_core.utils import atomic_write

FORMAT = "editgan-pixel-ensemble/1"
UPSAMPLE_MODES = ("bilinear", "nearest")
# Size of the (pixels x members*hidden) activation block computed at once. Below glibc's 32 MiB
# mmap ceiling, so the temporaries are recycled instead of page-faulted in on every block.
CHUNK_BYTES = 16 * 2**20

Features = Sequence[torch.Tensor]
Size = tuple[int, int]


def official_hidden(num_classes: int) -> tuple[int, int]:
    """Hidden widths of the official pixel classifier: wider for 32 classes or more."""
    return (128, 32) if num_classes < 32 else (256, 128)


class PixelMLP(nn.Module):
    """One ensemble member, ``Linear-ReLU-BN-Linear-ReLU-BN-Linear`` as in the official release.

    The module names (``layers.0`` ... ``layers.6``) are the official ones, so its checkpoints load
    after stripping DataParallel's ``module.`` prefix.
    """

    def __init__(self, dim: int, num_classes: int, hidden: Sequence[int] = (128, 32)) -> None:
        super().__init__()
        h1, h2 = hidden
        self.layers = nn.Sequential(
            nn.Linear(dim, h1), nn.ReLU(), nn.BatchNorm1d(h1),
            nn.Linear(h1, h2), nn.ReLU(), nn.BatchNorm1d(h2),
            nn.Linear(h2, num_classes),
        )

    @property
    def first(self) -> nn.Linear:
        return self.layers[0]

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Everything after the first linear layer: (P, h1) pre-activations -> (P, C) logits."""
        for layer in self.layers[1:]:
            hidden = layer(hidden)
        return hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


# -- interpolation as index tables ---------------------------------------------------------------
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


# -- the ensemble ----------------------------------------------------------------------------------
class PixelEnsemble(nn.Module):
    """N pixel MLPs over the generator's feature maps; logits = mean of the members' logits.

    ``feature_channels`` are the widths of the maps in ``Generator.synthesis(return_features=True)``
    order. ``upsample`` is how maps reach the output resolution ('bilinear', align_corners=False as
    in DatasetGAN training and the official tool's display path, or 'nearest').
    BatchNorm uses running statistics in eval mode; in train mode each pixel batch (or row chunk)
    supplies its own, so train on pixel batches (``train_ensemble``).
    """

    def __init__(self, feature_channels: Sequence[int], num_classes: int, members: int = 10,
                 hidden: Sequence[int] | None = None, upsample: str = "bilinear") -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample mode must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if members < 1 or num_classes < 2:
            raise ValueError(f"need at least 1 member and 2 classes, got {members} and {num_classes}")
        self.feature_channels = [int(c) for c in feature_channels]
        self.dim = sum(self.feature_channels)
        self.num_classes = int(num_classes)
        self.hidden = tuple(int(h) for h in (hidden or official_hidden(num_classes)))
        if len(self.hidden) != 2:
            raise ValueError(f"hidden must give two widths (the official MLP shape), got {self.hidden}")
        self.upsample = upsample
        self.members = nn.ModuleList(PixelMLP(self.dim, num_classes, self.hidden) for _ in range(members))
        self.chunk_bytes = CHUNK_BYTES
        self._frozen_cache: dict[str, tuple] = {}
        self._taps_cache: tuple | None = None

    @property
    def config(self) -> dict:
        return {"format": FORMAT, "feature_channels": self.feature_channels, "num_classes": self.num_classes,
                "members": len(self.members), "hidden": list(self.hidden), "upsample": self.upsample}

    def extra_repr(self) -> str:
        return f"d={self.dim}, classes={self.num_classes}, hidden={self.hidden}, upsample={self.upsample!r}"

    # -- inputs --------------------------------------------------------------------------------
    def check_features(self, features: Features) -> None:
        if len(features) != len(self.feature_channels):
            raise ValueError(f"got {len(features)} feature maps, the ensemble expects {len(self.feature_channels)} "
                             f"(feature_channels={self.feature_channels})")
        for j, (f, c) in enumerate(zip(features, self.feature_channels, strict=True)):
            if f.ndim != 4 or f.shape[1] != c or f.shape[0] != features[0].shape[0]:
                raise ValueError(f"feature map {j} has shape {tuple(f.shape)}, expected (B, {c}, h, w)")

    @staticmethod
    def default_size(features: Features, out_size: int | Size | None = None) -> Size:
        """``out_size`` as (H, W); by default the largest feature map's resolution."""
        if out_size is None:
            return max((tuple(f.shape[-2:]) for f in features), key=lambda s: s[0] * s[1])
        if isinstance(out_size, int):
            return out_size, out_size
        return int(out_size[0]), int(out_size[1])

    def first_weights(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """All members' first layers stacked, (N*h1, c_j) per feature map, and the (N*h1,) bias."""
        weight = torch.cat([m.first.weight for m in self.members], 0)
        bias = torch.cat([m.first.bias for m in self.members], 0)
        return list(weight.split(self.feature_channels, dim=1)), bias

    def _frozen(self, name: str, tensors: Sequence[torch.Tensor], extra: tuple, build: Callable[[], Any]) -> Any:
        """``build()``, reused while ``tensors`` are frozen and unchanged (a weight update or reload
        changes their versions and rebuilds it); never cached while gradients flow to them."""
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return build()
        key = (extra, tuple((t.data_ptr(), t._version) for t in tensors))
        cached = self._frozen_cache.get(name)
        if cached is None or cached[0] != key:
            cached = self._frozen_cache[name] = (key, build())
        return cached[1]

    def _projections(self, sizes: Sequence[Size]) -> tuple[dict[Size, tuple[list[int], torch.Tensor]], torch.Tensor]:
        """Per map resolution: its maps and their stacked first layers (c_group, N*h1); and the bias.

        Stacked once for frozen weights (inference, edits): restacking cost as much as the projection
        itself for an edit region of a few dozen pixels.
        """
        def build():
            weights, bias = self.first_weights()
            by_size: dict[Size, list[int]] = {}
            for j, size in enumerate(sizes):
                by_size.setdefault(size, []).append(j)
            return ({size: (maps, torch.cat([weights[j] for j in maps], 1).t().contiguous())
                     for size, maps in by_size.items()}, bias)

        params = [t for m in self.members for t in (m.first.weight, m.first.bias)]
        return self._frozen("projections", params, tuple(sizes), build)

    def _folded_heads(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eval-mode heads of all members as two batched affine maps, each BatchNorm folded into the
        Linear after it: (N, h1, h2), (N, 1, h2), (N, h2, C), (N, 1, C). Exact, and a handful of ops
        instead of sixty per call."""
        def fold(bn: nn.BatchNorm1d, linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            return (linear.weight * scale).t(), (linear.weight @ shift + linear.bias)[None]

        def build():
            first = [fold(m.layers[2], m.layers[3]) for m in self.members]
            second = [fold(m.layers[5], m.layers[6]) for m in self.members]
            return tuple(torch.stack(t) for t in (*zip(*first, strict=True), *zip(*second, strict=True)))

        tensors = [t for m in self.members for layer in m.layers[2:] for t in (*layer.parameters(), *layer.buffers())]
        return self._frozen("heads", tensors, (), build)

    def _groups(self, features: Features, budget_bytes: int) -> tuple[list[ProjectedRows], torch.Tensor]:
        """Maps of one resolution share their interpolation: project them together. Also returns the bias."""
        groups, bias = self._projections([tuple(f.shape[-2:]) for f in features])
        return [ProjectedRows([features[j] for j in maps], weight, budget_bytes)
                for maps, weight in groups.values()], bias

    def _hidden_rows(self, features: Features, out_size: Size) -> Iterator[torch.Tensor]:
        """First-layer pre-activations (B, rows, W, N*h1) for successive blocks of output rows.

        Each resolution's projection is interpolated to the block: rows from the projected source
        rows the block needs, then columns.
        """
        H, W = out_size
        groups, bias = self._groups(features, self.chunk_bytes)
        mode, batch, width = self.upsample, features[0].shape[0], bias.shape[0]
        tables = [interp_table(H, g.h, mode, bias.dtype, bias.device) for g in groups]
        step = max(1, self.chunk_bytes // (batch * W * width * bias.element_size()))
        for y0 in range(0, H, step):
            y1 = min(H, y0 + step)
            hidden = None
            for group, table in zip(groups, tables, strict=True):
                if group.h == H:
                    part = group(y0, y1)
                else:
                    i0, i1, t = (v[y0:y1] for v in table)
                    s0, s1 = int(i0[0]), int(i1[-1]) + 1
                    part = interp_rows(group(s0, s1), i0 - s0, i1 - s0, t, mode)
                if group.w != W:
                    part = interp_columns(part, W, mode)
                hidden = part + bias if hidden is None else hidden.add_(part)
            yield hidden

    def _hidden_pixels(self, features: Features, pixels: torch.Tensor, out_size: Size) -> Iterator[torch.Tensor]:
        """First-layer pre-activations (P, N*h1) of row-sorted pixels, in blocks of pixels.

        Per resolution the cheaper order is taken: project the source rows the block touches and
        gather from them (low-res maps: few rows), or gather the features and project (high-res).
        """
        _, bias = self._projections([tuple(f.shape[-2:]) for f in features])
        step = max(1, self.chunk_bytes // (bias.shape[0] * bias.element_size()))
        b, y, x = unflatten_pixels(pixels, out_size)
        images = b.unique_consecutive().tolist() if len(pixels) else [0]
        for image in images:
            inside = (b == image).nonzero().squeeze(1) if len(images) > 1 else slice(None)
            ys_b, xs_b = y[inside], x[inside]
            groups, _ = self._groups([f[image:image + 1] for f in features], self.chunk_bytes)
            for p0 in range(0, max(len(ys_b), 1), step):
                by, bx = ys_b[p0:p0 + step], xs_b[p0:p0 + step]
                hidden = bias.expand(len(by), -1)
                for group in groups if len(by) else []:
                    ys, xs, weight = pixel_taps(by, bx, (group.h, group.w), out_size, self.upsample, bias.dtype)
                    s0, s1 = int(ys.min()), int(ys.max()) + 1
                    if (s1 - s0) * group.w <= len(by):
                        rows = group(s0, s1).reshape(-1, bias.shape[0])
                        hidden = hidden + gather_rows(rows, (ys - s0) * group.w + xs, weight)
                    else:
                        index = ys * group.w + xs
                        sampled = torch.cat([sample_map(f, index, weight) for f in group.maps], 1)
                        hidden = hidden + sampled @ group.weight
                yield hidden

    def _taps(self, pixels: torch.Tensor, batch: int, out_size: Size, features: Features,
              dtype: torch.dtype) -> PixelTaps:
        """``PixelTaps`` of ``pixels``, reused while the same unchanged tensor is asked for again.

        The cache holds the tensor itself, so its storage cannot be reused by another one.
        """
        device = features[0].device
        map_sizes = tuple(tuple(f.shape[-2:]) for f in features)
        key = (pixels._version, tuple(pixels.shape), pixels.dtype, device, batch, out_size, map_sizes, self.upsample,
               dtype)
        if self._taps_cache is None or self._taps_cache[0] != key or self._taps_cache[1] is not pixels:
            flat = flat_pixels(pixels.to(device), batch, out_size)
            self._taps_cache = (key, pixels, PixelTaps(flat, batch, out_size, map_sizes, self.upsample, dtype))
        return self._taps_cache[2]

    def _hidden_taps(self, features: Features, taps: PixelTaps) -> torch.Tensor:
        """First-layer pre-activations (P, N*h1) of all the pixels at once.

        Per resolution: gather the features at the taps (one matrix product for all such maps
        afterwards), or, for maps with fewer pixels than requested, project the map and gather.
        """
        sizes = [tuple(f.shape[-2:]) for f in features]
        groups, bias = self._projections(sizes)
        hidden, sampled, gathered = bias, [], []  # sampled: (P, c) per gathered resolution
        for t in taps.groups:
            weight = groups[t.size][1]
            fmap = torch.cat([features[j] for j in t.maps], 1) if len(t.maps) > 1 else features[t.maps[0]]
            fmap = fmap.to(weight.dtype)
            if t.project_first:
                rows = fmap.permute(0, 2, 3, 1).reshape(-1, fmap.shape[1]) @ weight
                hidden = hidden + gather_rows(rows, t.index, t.weight)
            else:
                sampled.append(sample_map(fmap, t.index, t.weight))
                gathered.append(t.size)
        if not sampled:
            return hidden.expand(taps.count, -1) if hidden.ndim == 1 else hidden
        params = [t for m in self.members for t in (m.first.weight, m.first.bias)]
        stacked = self._frozen("gathered", params, (tuple(sizes), tuple(gathered)),
                               lambda: torch.cat([groups[size][1] for size in gathered]))
        return torch.addmm(hidden, torch.cat(sampled, 1), stacked)

    def _members(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        """Each member's logits (P, C) from the stacked first-layer pre-activations (P, N*h1)."""
        h1 = self.hidden[0]
        if self.training:  # BatchNorm on batch statistics: member by member
            return [m.head(hidden[:, i * h1:(i + 1) * h1]) for i, m in enumerate(self.members)]
        w2, b2, w3, b3 = self._folded_heads()
        x = hidden.view(len(hidden), len(self.members), h1).transpose(0, 1).relu()
        return list(torch.baddbmm(b3, torch.baddbmm(b2, x, w2).relu_(), w3).unbind(0))

    def _map(self, features: Features, pixels: torch.Tensor | None, out_size: int | Size | None,
             reduce: Callable[[list[torch.Tensor]], torch.Tensor]) -> torch.Tensor:
        """``reduce(member logits)`` per pixel: (B, H, W, ...) for the image, (P, ...) for pixels."""
        self.check_features(features)
        size = self.default_size(features, out_size)
        batch = features[0].shape[0]
        if pixels is not None:
            dtype = self.members[0].first.weight.dtype
            count = int(pixels.sum()) if pixels.dtype == torch.bool else pixels.numel()
            if count * len(self.members) * self.hidden[0] * torch.finfo(dtype).bits // 8 <= self.chunk_bytes:
                taps = self._taps(pixels, batch, size, features, dtype)  # one block: all pixels at once
                return reduce(self._members(self._hidden_taps(features, taps)))
            pixels = flat_pixels(pixels.to(features[0].device), batch, size)
            pixels, order = pixels.sort()  # row order: each block touches few source rows
            out = torch.cat([reduce(self._members(h)) for h in self._hidden_pixels(features, pixels, size)], 0)
            return out[order.argsort()]
        out = []
        for hidden in self._hidden_rows(features, size):
            rows = hidden.shape[1]
            result = reduce(self._members(hidden.reshape(-1, hidden.shape[-1])))
            out.append(result.view(batch, rows, size[1], *result.shape[1:]))
        return torch.cat(out, 1)

    # -- public --------------------------------------------------------------------------------
    def forward(self, features: Features, pixels: torch.Tensor | None = None,
                out_size: int | Size | None = None) -> torch.Tensor:
        """Ensemble logits: (B, C, H, W) for whole images, or (P, C) for ``pixels``.

        ``pixels`` is a bool mask (B, H, W) or flat indices into (B, H, W) (``y * W + x`` for one
        image); rows come in mask order. The edit loop asks only for its region's pixels.
        """
        logits = self._map(features, pixels, out_size, mean_logits)
        return logits if pixels is not None else logits.permute(0, 3, 1, 2)

    def forward_reference(self, features: Features, out_size: int | Size | None = None) -> torch.Tensor:
        """The official formulation: upsample every map, concatenate to (B, d, H, W), run each MLP per pixel.

        Needs d x H x W floats; the definition the memory-light path is tested against.
        """
        self.check_features(features)
        H, W = self.default_size(features, out_size)
        align = False if self.upsample == "bilinear" else None
        stack = torch.cat([F.interpolate(f, size=(H, W), mode=self.upsample, align_corners=align)
                           for f in features], 1)
        x = stack.permute(0, 2, 3, 1).reshape(-1, self.dim)
        logits = torch.stack([m(x) for m in self.members]).mean(0)
        return logits.view(stack.shape[0], H, W, -1).permute(0, 3, 1, 2)

    @torch.no_grad()
    def predict(self, features: Features, out_size: int | Size | None = None) -> torch.Tensor:
        """Label map (B, H, W): argmax of the ensemble's mean logits."""
        return self._map(features, None, out_size, lambda logits: mean_logits(logits).argmax(1))

    @torch.no_grad()
    def uncertainty(self, features: Features, out_size: int | Size | None = None,
                    kind: str = "entropy") -> torch.Tensor:
        """Per-pixel uncertainty in [0, 1], (B, H, W), to show where the labels are unreliable.

        ``entropy``: entropy of the members' mean softmax over log C. ``disagreement``: fraction of
        members whose label differs from the ensemble's.
        """
        if kind == "entropy":
            return self._map(features, None, out_size, self._entropy)
        if kind == "disagreement":
            return self._map(features, None, out_size, disagreement)
        raise ValueError(f"unknown uncertainty kind {kind!r} (entropy or disagreement)")

    def _entropy(self, logits: list[torch.Tensor]) -> torch.Tensor:
        probs = torch.stack([p.softmax(1) for p in logits]).mean(0)
        return -(probs * probs.clamp_min(1e-12).log()).sum(1) / math.log(self.num_classes)

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """One safetensors file; the config (JSON) rides in its metadata under ``config``."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {"config": json.dumps(self.config)}
        return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))

    @classmethod
    def load(cls, path: str | Path) -> PixelEnsemble:
        """Read a file written by ``save``; returned in eval mode."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"segmenter file not found: {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        try:
            config = json.loads(meta["config"])
            if config.get("format") != FORMAT:
                raise CheckpointError(f"{path.name} is not a pixel ensemble ({FORMAT}), format={config.get('format')}")
            ensemble = cls(config["feature_channels"], config["num_classes"], config["members"],
                           config["hidden"], config.get("upsample", "bilinear"))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path.name} has no usable 'config' metadata ({exc!r})") from exc
        load_checked(ensemble, load_file(str(path)), f"segmenter {path.name}")
        return ensemble.eval()

    @classmethod
    def from_official(cls, paths: Sequence[str | Path], feature_channels: Sequence[int],
                      upsample: str = "bilinear") -> PixelEnsemble:
        """Import the official EditGAN/DatasetGAN ensemble: one ``{'model_state_dict': ...}`` file per member.

        Sizes (hidden widths, classes) are read from the files; the input width must equal
        ``sum(feature_channels)`` of the generator whose features it will see.
        """
        if not paths:
            raise CheckpointError("no ensemble member files given")
        states, shapes = [], None
        for path in map(Path, paths):
            state = official_state(path)
            found = read_official_shapes(state, path)
            if found[0] != sum(feature_channels):
                raise CheckpointError(
                    f"{path.name}: module.layers.0.weight takes d={found[0]} features, but the generator's maps "
                    f"have sum(feature_channels)={sum(feature_channels)} ({len(feature_channels)} maps); "
                    "is this ensemble for another generator or resolution?")
            if shapes is not None and found != shapes:
                raise CheckpointError(f"{path.name}: member shape (d, h1, h2, C)={found} differs from the first "
                                      f"member's {shapes}")
            shapes = found
            states.append(state)
        _, h1, h2, num_classes = shapes
        ensemble = cls(feature_channels, num_classes, len(states), (h1, h2), upsample)
        for member, state, path in zip(ensemble.members, states, paths, strict=True):
            load_checked(member, state, f"official ensemble member {Path(path).name}")
        return ensemble.eval()


def mean_logits(logits: list[torch.Tensor]) -> torch.Tensor:
    total = logits[0]
    for more in logits[1:]:
        total = total + more
    return total / len(logits)


def disagreement(logits: list[torch.Tensor]) -> torch.Tensor:
    label = mean_logits(logits).argmax(1)
    return torch.stack([m.argmax(1) != label for m in logits]).float().mean(0)


def official_state(path: Path) -> dict[str, torch.Tensor]:
    """A member's state dict with DataParallel's ``module.`` prefix removed."""
    ckpt = read_torch_file(path)
    state = ckpt.get("model_state_dict", ckpt)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name}: 'model_state_dict' is a {type(state).__name__}, expected a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for bn in ("layers.2", "layers.5"):  # files from before PyTorch 0.4.1 lack the counter
        if f"{bn}.running_mean" in state:
            state.setdefault(f"{bn}.num_batches_tracked", torch.tensor(0))
    return state


def read_official_shapes(state: dict[str, torch.Tensor], path: Path) -> tuple[int, int, int, int]:
    """(d, h1, h2, C) of an official member, with the offending key named when it is malformed."""
    shapes = []
    for key in ("layers.0.weight", "layers.3.weight", "layers.6.weight"):
        if key not in state:
            found = ", ".join(sorted(state)[:8])
            raise CheckpointError(f"{path.name}: no 'module.{key}'; not an official pixel classifier (keys: {found})")
        if state[key].ndim != 2:
            raise CheckpointError(f"{path.name}: module.{key} has shape {tuple(state[key].shape)}, expected a matrix")
        shapes.append(tuple(state[key].shape))
    (h1, d), (h2, h1b), (num_classes, h2b) = shapes
    if h1b != h1 or h2b != h2:
        raise CheckpointError(f"{path.name}: layer widths do not chain: layers.0 {shapes[0]}, layers.3 {shapes[1]}, "
                              f"layers.6 {shapes[2]}")
    return d, h1, h2, num_classes


# -- training --------------------------------------------------------------------------------------
@dataclass
class TrainProgress:
    """What ``train_ensemble``'s progress callback sees after each step."""

    member: int  # 0-based
    members: int
    step: int  # 1-based
    steps: int
    loss: float
    accuracy: float  # on this step's pixel batch


def init_official_(member: PixelMLP, generator: torch.Generator) -> None:
    """The official init: linear weights N(0, 0.02), biases 0 (BatchNorm keeps PyTorch's)."""
    for layer in member.layers:
        if isinstance(layer, nn.Linear):
            with torch.no_grad():
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.02)
                layer.bias.zero_()


def train_ensemble(features_list: Iterable[Features], labels_list: Sequence[torch.Tensor], num_classes: int,
                   feature_channels: Sequence[int], members: int = 10, steps: int = 1000,
                   pixels_per_step: int = 2048, lr: float = 1e-3, seed: int = 0,
                   hidden: Sequence[int] | None = None, upsample: str = "bilinear",
                   class_balance: float = 0.0,
                   progress: Callable[[TrainProgress], None] | None = None) -> PixelEnsemble:
    """Train each member (seed ``seed + m``) on random pixels of the K annotated images.

    ``features_list`` yields image k's feature maps at their native resolutions (batch 1; float16
    is fine), ``labels_list[k]`` is its (H, W) class ids. The maps are read once into a
    ``PixelBank``; a generator that synthesises each image's maps on demand avoids holding them
    twice. Every step reads ``pixels_per_step`` random pixels of random images with the pixel-subset
    path's interpolation, so a step costs (pixels x d), not K x d x H x W. Cross-entropy, Adam.
    ``class_balance`` α draws a class with probability ∝ (its pixel count)^(1-α), then one of its
    pixels: 0 is DatasetGAN's uniform pixels, 1 every class equally often (small parts such as pupils
    are a few pixels of thousands). Raise from ``progress`` to cancel.
    """
    if pixels_per_step < 2:
        raise ValueError("pixels_per_step must be at least 2 (BatchNorm needs a batch)")
    ensemble = PixelEnsemble(feature_channels, num_classes, members, hidden, upsample)
    bank = PixelBank(features_list, labels_list, num_classes, upsample, check=ensemble.check_features,
                     class_balance=class_balance)
    ensemble.to(bank.device)
    for m, member in enumerate(ensemble.members):
        rng = torch.Generator().manual_seed(seed + m)
        init_official_(member, rng)
        member.train()
        optimiser = torch.optim.Adam(member.parameters(), lr=lr)
        for step in range(1, steps + 1):
            x, y = bank.sample(pixels_per_step, rng)
            logits = member(x)
            loss = F.cross_entropy(logits, y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if progress is not None:
                accuracy = (logits.argmax(1) == y).float().mean().item()
                progress(TrainProgress(m, members, step, steps, loss.item(), accuracy))
    return ensemble.eval()


class PixelBank:
    """The annotated images' feature maps, at native resolutions, ready for random pixel batches.

    Consecutive maps of one resolution are stored together channels-last, (K*h*w, c) for all K
    images, so a batch gathers whole feature vectors (a gather per channel plane is many times
    slower) and is read with the pixel-subset path's taps. Memory: one copy of the maps.
    """

    def __init__(self, features_list: Iterable[Features], labels_list: Sequence[torch.Tensor], num_classes: int,
                 upsample: str = "bilinear", check: Callable[[Features], None] | None = None,
                 class_balance: float = 0.0) -> None:
        if not 0.0 <= class_balance <= 1.0:
            raise ValueError(f"class_balance must lie in [0, 1], got {class_balance}")
        self.upsample, self.class_balance = upsample, class_balance
        count = len(labels_list)
        self.runs: list[tuple[int, int, torch.Tensor]] = []  # (h, w, (K*h*w, c_run)) in feature order
        seen = 0
        for k, features in enumerate(features_list):
            if k >= count:
                raise ValueError(f"more feature sets than the {count} label maps")
            if check is not None:
                check(features)
            if features[0].shape[0] != 1:
                raise ValueError(f"image {k}: expected batch-1 feature maps, got batch {features[0].shape[0]}")
            if k == 0:
                self._allocate(features, count)
            for (h, w, bank), maps in zip(self.runs, self._run_maps(features), strict=True):
                block = torch.cat([f[0].detach() for f in maps], 0).permute(1, 2, 0)  # (h, w, c_run)
                bank.view(count, h, w, -1)[k] = block
            seen = k + 1
        if seen != count or count == 0:
            raise ValueError(f"need as many feature sets as label maps, got {seen} and {count}")
        self.device = self.runs[0][2].device
        self.dtype = torch.promote_types(self.runs[0][2].dtype, torch.float32)
        self.dim = sum(bank.shape[1] for _, _, bank in self.runs)
        labels = [torch.as_tensor(y).to(device=self.device, dtype=torch.long) for y in labels_list]
        self.size = tuple(labels[0].shape)
        for k, y in enumerate(labels):
            if y.ndim != 2 or tuple(y.shape) != self.size:
                raise ValueError(f"image {k}: label maps must all be (H, W) of one size, got {tuple(y.shape)} "
                                 f"(first: {self.size})")
            if y.min() < 0 or y.max() >= num_classes:
                raise ValueError(f"image {k}: labels must lie in [0, {num_classes}), found {int(y.min())}.."
                                 f"{int(y.max())}")
        self.labels = torch.stack(labels).flatten(1)  # (K, H*W)
        # pixels grouped by class (flat into K*H*W), for class-balanced draws
        flat = self.labels.flatten().cpu()
        self.by_class = flat.argsort(stable=True)
        counts = torch.bincount(flat, minlength=num_classes)
        self.class_start = torch.cumsum(counts, 0) - counts
        self.class_count = counts
        present = counts > 0
        self.class_prob = torch.where(present, counts.double().clamp_min(1) ** (1 - class_balance), 0.0)

    @staticmethod
    def _run_maps(features: Features) -> list[list[torch.Tensor]]:
        runs: list[list[torch.Tensor]] = []
        for f in features:
            if runs and runs[-1][-1].shape[-2:] == f.shape[-2:]:
                runs[-1].append(f)
            else:
                runs.append([f])
        return runs

    def _allocate(self, features: Features, count: int) -> None:
        for maps in self._run_maps(features):
            f = maps[0]
            h, w = f.shape[-2:]
            channels = sum(m.shape[1] for m in maps)
            self.runs.append((h, w, f.new_empty(count * h * w, channels)))

    def sample(self, count: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (count, d) and labels (count,) of random pixels (uniform, or class-balanced)."""
        H, W = self.size
        if self.class_balance > 0:
            classes = torch.multinomial(self.class_prob, count, replacement=True, generator=rng)
            offset = (torch.rand(count, generator=rng, dtype=torch.float64) * self.class_count[classes]).long()
            flat = self.by_class[self.class_start[classes] + offset].to(self.device)
            image, pixels = flat.div(H * W, rounding_mode="floor"), flat.remainder(H * W)
        else:
            image = torch.randint(len(self.labels), (count,), generator=rng).to(self.device)
            pixels = torch.randint(H * W, (count,), generator=rng).to(self.device)
        y, x = pixels.div(W, rounding_mode="floor"), pixels.remainder(W)
        columns = []
        for h, w, bank in self.runs:
            ys, xs, weight = pixel_taps(y, x, (h, w), self.size, self.upsample, self.dtype)
            columns.append(gather_rows(bank, image * (h * w) + ys * w + xs, weight))
        return torch.cat(columns, 1), self.labels[image, pixels]


# -- memory benchmark ------------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Make VmHWM (peak RSS) restart from the current RSS; Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    """Return freed heap pages to the OS, so later allocations show up as RSS growth."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure_peak(fn: Callable[[], object]) -> tuple[object, float, float, float]:
    """Run ``fn``; return its result, peak RSS above the starting RSS (bytes), wall and CPU seconds.

    The heap is trimmed first, so memory freed earlier cannot be reused unseen, and the kernel's
    peak-RSS counter is reset, so the synthesis before does not mask this call's peak.
    """
    _trim_heap()
    if not _reset_peak_rss():
        raise OSError("cannot reset the peak-RSS counter (/proc/self/clear_refs); Linux >= 4.0 needed")
    base = _proc_status_kib("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return result, (_proc_status_kib("VmHWM") - base) * 1024.0, wall, cpu


def bench_memory(size: int = 1024, num_classes: int = 12, members: int = 10, region: float = 0.1) -> None:
    from editgan_core.models.stylegan2 import Generator, config_f_channels

    gib = 2.0**30
    torch.manual_seed(0)
    generator = Generator(size, 512, 8, channel_multiplier=2).eval().requires_grad_(False)
    start = time.perf_counter()
    with torch.no_grad():
        latent = generator.w_to_wplus(generator.get_latent(torch.randn(1, 512)))
        features = generator.synthesis(latent, noise=generator.stored_noise(), return_features=True).features
    print(f"synthesis {size} px config-f (random weights): {time.perf_counter() - start:.1f} s, "
          f"features {sum(f.numel() for f in features) * 4 / gib:.2f} GiB at native resolutions")
    channels = generator.feature_channels()
    ensemble = PixelEnsemble(channels, num_classes, members).eval().requires_grad_(False)
    del generator
    for res in sorted({512, size}):
        ch = config_f_channels(2)
        d = 2 * sum(ch[2**i] for i in range(2, int(math.log2(res)) + 1))
        print(f"official stack at {res} px: d={d} x {res} x {res} x 4 B = {d * res * res * 4 / gib:.2f} GiB")
    print(f"ensemble: {members} members, hidden {ensemble.hidden}, {num_classes} classes, d={ensemble.dim}, "
          f"upsample {ensemble.upsample}, chunk {ensemble.chunk_bytes / 2**20:.0f} MiB")

    with torch.no_grad():
        logits, extra, wall, cpu = measure_peak(lambda: ensemble(features))
    print(f"full-image logits {tuple(logits.shape)}: peak extra RSS {extra / gib:.3f} GiB "
          f"({extra / 2**20:.0f} MiB, includes the {logits.numel() * 4 / 2**20:.0f} MiB output), "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU")

    side = int(size * region**0.5)
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[:, (size - side) // 2:(size + side) // 2, (size - side) // 2:(size + side) // 2] = True
    with torch.no_grad():
        picked, extra, wall, cpu = measure_peak(lambda: ensemble(features, pixels=mask))
    diff = (picked - logits.permute(0, 2, 3, 1)[mask]).abs().max().item()
    print(f"region logits ({int(mask.sum())} px, {region:.0%} of the image): peak extra RSS {extra / 2**20:.0f} MiB, "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU, max |difference to full-image logits| {diff:.2e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench-memory", action="store_true", help="peak memory of full-image logits")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    from editgan_core.cli_common import setup_logging

    setup_logging()
    args = parser.parse_args(argv)
    if not args.bench_memory:
        parser.error("nothing to do (try --bench-memory)")
    torch.set_num_threads(args.threads)
    bench_memory(args.size, args.classes, args.members)


if __name__ == "__main__":
    main()
