"""A small CNN that reads a domain's attributes back from an image: the judge of edits and KID's eyes.

Why our own network: Inception weights cannot be downloaded here, and ImageNet features say little
about cartoon faces anyway. A regressor trained on rendered faces to recover the drawn values
(smile, gaze, ...) measures what an edit actually changed, and its penultimate layer is a feature
space where KID sees the things that matter for this domain.

Targets are normalised to [0, 1] by their ranges for training; ``forward`` returns the editable
attributes in the renderer's own units. Any input resolution is resized to ``input_size`` first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from editgan_core.models.serialization import ModelMixin, register_config


class ConvBlock(nn.Sequential):
    """3x3 conv + GroupNorm + SiLU. GroupNorm, not BatchNorm: train and eval compute the same thing."""

    def __init__(self, in_channel: int, out_channel: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channel, out_channel, 3, stride=stride, padding=1, bias=False),
            nn.GroupNorm(max(1, min(8, out_channel // 4)), out_channel),
            nn.SiLU(),
        )


class AttributeNet(ModelMixin, nn.Module):
    """Stride-2 stem, then (stride-2 block, block) per width, flatten, hidden layer, linear head.

    ``targets`` maps every regressed value to its (low, high) range, in output order; ``attributes``
    names the subset ``forward`` returns (default: all targets). The last feature map is flattened
    rather than averaged, as in StyleGAN's discriminator, so positions (gaze, pose) stay readable.
    """

    @register_config
    def __init__(self, targets: Mapping[str, Sequence[float]], attributes: Sequence[str] | None = None,
                 input_size: int = 64, channels: Sequence[int] = (24, 32, 64, 128), hidden: int = 256) -> None:
        super().__init__()
        self.targets = {name: (float(lo), float(hi)) for name, (lo, hi) in targets.items()}
        self.attribute_names = list(attributes if attributes is not None else self.targets)
        unknown = [n for n in self.attribute_names if n not in self.targets]
        if unknown:
            raise KeyError(f"attributes {unknown} are not among the targets")
        self.input_size = int(input_size)
        self.channels = [int(c) for c in channels]
        self.hidden = int(hidden)
        final_size = self.input_size // 2 ** len(self.channels)
        if final_size < 1 or self.input_size % 2 ** len(self.channels):
            raise ValueError(f"input_size {input_size} is not divisible by 2^{len(self.channels)}")

        blocks: list[nn.Module] = [ConvBlock(3, self.channels[0], stride=2)]
        for c_in, c_out in zip(self.channels[:-1], self.channels[1:], strict=True):
            blocks += [ConvBlock(c_in, c_out, stride=2), ConvBlock(c_out, c_out)]
        self.convs = nn.Sequential(*blocks)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(self.channels[-1] * final_size**2, self.hidden), nn.SiLU())
        self.head = nn.Linear(self.hidden, len(self.targets))

        names = list(self.targets)
        low = torch.tensor([self.targets[n][0] for n in names])
        high = torch.tensor([self.targets[n][1] for n in names])
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("span", high - low, persistent=False)
        index = torch.tensor([names.index(n) for n in self.attribute_names])
        self.register_buffer("attribute_index", index, persistent=False)

    @property
    def target_names(self) -> list[str]:
        return list(self.targets)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (self.input_size, self.input_size):
            return x
        return F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                             antialias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> penultimate activations (B, hidden): KID's feature space."""
        return self.fc(self.convs(self.resize(x)))

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        """All targets, each scaled to [0, 1] by its range (what training regresses)."""
        return self.head(self.features(x))

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every target in its own units, by name."""
        values = self.normalised(x) * self.span + self.low
        return dict(zip(self.targets, values.unbind(1), strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> (B, len(attribute_names)) attributes in the renderer's units."""
        values = self.normalised(x)[:, self.attribute_index]
        return values * self.span[self.attribute_index] + self.low[self.attribute_index]
