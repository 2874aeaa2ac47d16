"""A small U-Net that segments the generator's pictures from their pixels: a second reader for the edit objective.

Why: EditGAN's segmentation branch reads the generator's features, and an optimised δ can change those features
so that the branch reads the painted parts while the pixels barely follow (on the demo model: lowered eyebrows,
2-3 px high, that the branch sees and nobody else does). A segmenter that sees only pixels cannot be satisfied
that way. It is distilled from the bundle's own branch on generator samples (``train.image_segmenter``), so it
needs no annotations beyond the branch's and suits any bundle.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from editgan_core.models.serialization import ModelMixin, register_config

MAX_SIZE = 256  # a larger generator's pictures are read at this size: small parts are still several pixels


def model_size(resolution: int) -> int:
    """The size a pixel segmenter for a generator of ``resolution`` works at."""
    return min(int(resolution), MAX_SIZE)


def mismatch(model: ImageSegmenter, num_classes: int, resolution: int) -> str | None:
    """Why ``model`` cannot read a bundle of ``num_classes`` classes at ``resolution`` px, or None if it can."""
    want = (int(num_classes), model_size(resolution))
    if (model.num_classes, model.size) == want:
        return None
    return f"its image segmenter reads {model.num_classes} classes at {model.size} px, not {want[0]} at {want[1]} px"


class DoubleConv(nn.Sequential):
    """Two 3x3 conv + GroupNorm + SiLU: the U-Net's unit at every level."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        groups = max(1, min(8, out_channel // 4))
        super().__init__(
            nn.Conv2d(in_channel, out_channel, 3, padding=1), nn.GroupNorm(groups, out_channel), nn.SiLU(),
            nn.Conv2d(out_channel, out_channel, 3, padding=1), nn.GroupNorm(groups, out_channel), nn.SiLU(),
        )


class ImageSegmenter(ModelMixin, nn.Module):
    """U-Net: ``len(channels)`` levels, each half the size of the one above, skips joined by concatenation.

    Input: images in [-1, 1], (B, 3, H, W); other sizes than ``size`` are resized on the way in and the logits
    (B, num_classes, H, W) resized back, so a pixel index into the input is an index into the output.
    """

    @register_config
    def __init__(self, num_classes: int, size: int, channels: Sequence[int] = (32, 64, 128, 192)) -> None:
        super().__init__()
        self.num_classes, self.size = int(num_classes), int(size)
        self.channels = [int(c) for c in channels]
        if self.num_classes < 2 or len(self.channels) < 2 or self.size % 2 ** (len(self.channels) - 1):
            raise ValueError(f"image segmenter: need >= 2 classes and levels, and size {size} divisible by "
                             f"2^{len(self.channels) - 1}")
        ins = [3, *self.channels[:-1]]
        self.down = nn.ModuleList(DoubleConv(i, o) for i, o in zip(ins, self.channels, strict=True))
        self.up = nn.ModuleList(DoubleConv(self.channels[i + 1] + self.channels[i], self.channels[i])
                                for i in reversed(range(len(self.channels) - 1)))
        self.head = nn.Conv2d(self.channels[0], self.num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(image.shape)}")
        out_size = image.shape[-2:]
        x = image.clamp(-1, 1)
        if out_size != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=out_size[-1] > self.size)
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        logits = self.head(x)
        if out_size != (self.size, self.size):
            logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
        return logits
