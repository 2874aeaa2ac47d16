"""EditGAN's segmentation branch: an ensemble of DatasetGAN pixel MLPs over generator features.

Each member classifies one pixel from the generator's feature maps, upsampled to the output
resolution and concatenated (d = sum of the map widths: 6016 for config F at 512 px); the ensemble's
logits are the mean of its members' logits (Zhang et al. 2021, Ling et al. 2021).

The official code builds that (d x H x W) stack, gigabytes per image at 512 px. Here it never
exists: the first linear layer is per pixel, so it commutes with the (linear) upsampling, and runs
as a 1x1 projection of every feature map at the map's own resolution. Only the projected
(members * hidden) channels are upsampled and summed, a few rows at a time for full images, or
only at the requested pixels for the edit region. ``forward_reference`` is the official
formulation, kept as the definition the tests compare against. ``eval.segmenter_memory`` measures
the memory this saves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from editgan_core.models.serialization import ModelMixin, register_config
from editgan_core.pixel_sampling import (
    UPSAMPLE_MODES,
    Features,
    PixelTaps,
    ProjectedRows,
    Size,
    flat_pixels,
    gather_rows,
    interp_columns,
    interp_rows,
    interp_table,
    pixel_taps,
    sample_map,
    unflatten_pixels,
)

# Size of the (pixels x members*hidden) activation block computed at once. Below glibc's 32 MiB
# mmap ceiling, so the temporaries are recycled instead of page-faulted in on every block.
CHUNK_BYTES = 16 * 2**20


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


# -- the ensemble ----------------------------------------------------------------------------------
class PixelEnsemble(ModelMixin, nn.Module):
    """N pixel MLPs over the generator's feature maps; logits = mean of the members' logits.

    ``feature_channels`` are the widths of the maps in ``Generator.synthesis(return_features=True)``
    order. ``upsample`` is how maps reach the output resolution ('bilinear', align_corners=False as
    in DatasetGAN training and the official tool's display path, or 'nearest').
    BatchNorm uses running statistics in eval mode; in train mode each pixel batch (or row chunk)
    supplies its own, so train on pixel batches (``train_ensemble``).
    """

    FORMAT = "editgan-pixel-ensemble/1"

    @register_config
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

    @torch.no_grad()
    def predict_with_disagreement(self, features: Features, out_size: int | Size | None = None
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """``predict`` and ``uncertainty(kind="disagreement")`` from one pass of the members, (B, H, W) each:
        a generated dataset needs both for every image."""
        both = self._map(features, None, out_size,
                         lambda logits: torch.stack([t.float() for t in labels_and_disagreement(logits)], -1))
        return both[..., 0].long(), both[..., 1]

    def _entropy(self, logits: list[torch.Tensor]) -> torch.Tensor:
        probs = torch.stack([p.softmax(1) for p in logits]).mean(0)
        return -(probs * probs.clamp_min(1e-12).log()).sum(1) / math.log(self.num_classes)


def mean_logits(logits: list[torch.Tensor]) -> torch.Tensor:
    total = logits[0]
    for more in logits[1:]:
        total = total + more
    return total / len(logits)


def labels_and_disagreement(logits: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ensemble's label and the fraction of members whose own label differs from it, per pixel."""
    label = mean_logits(logits).argmax(1)
    return label, torch.stack([m.argmax(1) != label for m in logits]).float().mean(0)


def disagreement(logits: list[torch.Tensor]) -> torch.Tensor:
    return labels_and_disagreement(logits)[1]
