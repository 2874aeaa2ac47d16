"""Image -> W+ encoder: the starting point of EditGAN's embedding step.

A residual CNN (the StyleGAN2 discriminator's blocks) downsamples the image to 4x4. Like pSp
(Richardson et al. 2021), the W+ entries are read from different depths: the coarse styles (4-8 px
layers: pose, face shape) from the 4x4 map, the medium ones from 8x8, the fine ones from 16x16,
each through a small top-down pyramid so that shallow maps also see the global context.

The heads predict an *offset* from the generator's average latent ``w_avg`` (a buffer saved with the
weights) and their last layers start at zero, so an untrained encoder returns the average face and
training starts from a sensible latent instead of a random one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from editgan_core.models.serialization import ModelMixin, int_keys, register_config
from editgan_core.models.stylegan2 import ConvLayer, EqualConv2d, EqualLinear, ResBlock

# How many W+ entries each pyramid level predicts, coarse first; the last level takes the rest.
COARSE_LATENTS = 4
MEDIUM_LATENTS = 4


def default_channels(size: int, style_dim: int) -> dict[int, int]:
    """Widths per resolution: ``16 * style_dim / res`` clipped to [16, style_dim].

    Gives {64: 32, 32: 64, 16..4: 128} for the 64-px demo (style_dim 128, ~1.5 M parameters) and
    {256: 32, 128: 64, 64: 128, 32: 256, 16..4: 512} for a config-F generator encoded at 256 px.
    """
    return {2**i: min(style_dim, max(16, 16 * style_dim // 2**i)) for i in range(2, int(math.log2(size)) + 1)}


def latent_groups(n_latent: int) -> list[tuple[int, int]]:
    """(start, stop) W+ index ranges for the coarse, medium and fine heads; empty ones dropped."""
    bounds = [0, min(COARSE_LATENTS, n_latent), min(COARSE_LATENTS + MEDIUM_LATENTS, n_latent), n_latent]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


class StyleHead(nn.Module):
    """Feature map (C, r, r) -> ``count`` styles: strided convs down to 4x4, flatten, linear.

    Flattening the 4x4 map (rather than pooling it) keeps *where* things are, which the coarse
    styles (pose, layout) depend on. The final layer starts at zero: offset 0 = the average latent.
    """

    def __init__(self, in_channel: int, resolution: int, width: int, count: int, style_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channel = in_channel
        while resolution > 4:
            layers.append(ConvLayer(channel, width, 3, downsample=True))
            channel, resolution = width, resolution // 2
        if not layers:
            layers.append(ConvLayer(channel, width, 3))
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(width * 16, count * style_dim)
        nn.init.zeros_(self.linear.weight)
        self.count = count
        self.style_dim = style_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x).flatten(1)
        return self.linear(out).view(-1, self.count, self.style_dim)


class Encoder(ModelMixin, nn.Module):
    """Image (B, 3, size, size) in [-1, 1] -> W+ (B, n_latent, style_dim) = ``w_avg`` + predicted offset.

    ``size`` is the input resolution and need not be the generator's (a 1024-px generator is usually
    encoded from a 256-px copy); other input sizes are resized on the way in.
    """

    @register_config
    def __init__(self, size: int, n_latent: int, style_dim: int, channels: Mapping[int, int] | None = None,
                 head_width: int | None = None) -> None:
        super().__init__()
        if size < 4 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 4, got {size}")
        channels = int_keys(channels) or default_channels(size, style_dim)
        missing = [2**i for i in range(2, int(math.log2(size)) + 1) if 2**i not in channels]
        if missing:
            raise ValueError(f"channels has no width for resolutions {missing}")
        self.size = size
        self.n_latent = n_latent
        self.style_dim = style_dim
        self.channels = channels
        self.head_width = head_width or max(16, channels[4] // 4)

        self.from_rgb = ConvLayer(3, channels[size], 1)
        self.blocks = nn.ModuleList()
        res = size
        while res > 4:
            self.blocks.append(ResBlock(channels[res], channels[res // 2]))
            res //= 2

        groups = latent_groups(n_latent)
        # Level i of the pyramid sits at 4 * 2**i px, capped by the input size.
        self.resolutions = [min(4 * 2**i, size) for i in range(len(groups))]
        self.groups = groups
        self.laterals = nn.ModuleList(
            EqualConv2d(channels[lo], channels[hi], 1)
            for lo, hi in itertools.pairwise(self.resolutions)
        )
        self.heads = nn.ModuleList(
            StyleHead(channels[res], res, self.head_width, stop - start, style_dim)
            for res, (start, stop) in zip(self.resolutions, groups, strict=True)
        )
        self.register_buffer("w_avg", torch.zeros(style_dim))

    @torch.no_grad()
    def set_w_avg(self, w_avg: torch.Tensor) -> Encoder:
        """Store the generator's average w (any shape with ``style_dim`` elements) as the output origin."""
        self.w_avg.copy_(w_avg.reshape(self.style_dim))
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(image.shape)}")
        if image.shape[-2:] != (self.size, self.size):
            image = F.interpolate(image, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                  antialias=image.shape[-1] > self.size)
        features: dict[int, torch.Tensor] = {}
        out = self.from_rgb(image)
        res = self.size
        features[res] = out
        for block in self.blocks:
            out = block(out)
            res //= 2
            features[res] = out
        offsets = []
        pyramid = features[self.resolutions[0]]
        for i, head in enumerate(self.heads):
            if i > 0:
                res = self.resolutions[i]
                top_down = self.laterals[i - 1](pyramid)
                if top_down.shape[-1] != res:
                    top_down = F.interpolate(top_down, size=(res, res), mode="bilinear", align_corners=False)
                pyramid = features[res] + top_down
            offsets.append(head(pyramid))
        return self.w_avg + torch.cat(offsets, dim=1)
