"""Training the segmentation branch's pixel-MLP ensemble on the feature maps of K annotated images.

As in DatasetGAN, each member is trained on its own: every step draws random pixels from the
annotated images, reads their feature vectors with the same taps the pixel-subset logits use, and
takes one Adam step on cross-entropy. A step costs (pixels x d), never K x d x H x W.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from editgan_core.models.segmenter import PixelEnsemble, PixelMLP
from editgan_core.pixel_sampling import Features, gather_rows, pixel_taps


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
        labels = checked_labels(labels_list, num_classes, self.device)
        self.size = tuple(labels.shape[1:])
        self.labels = labels.flatten(1)  # (K, H*W)
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


def checked_labels(labels_list: Sequence[torch.Tensor], num_classes: int, device: torch.device) -> torch.Tensor:
    """The K label maps as one (K, H, W) long tensor; a map of another size or class outside [0, C) is named."""
    labels = [torch.as_tensor(y).to(device=device, dtype=torch.long) for y in labels_list]
    size = tuple(labels[0].shape)
    for k, y in enumerate(labels):
        if y.ndim != 2 or tuple(y.shape) != size:
            raise ValueError(f"image {k}: label maps must all be (H, W) of one size, got {tuple(y.shape)} "
                             f"(first: {size})")
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(f"image {k}: labels must lie in [0, {num_classes}), found {int(y.min())}.."
                             f"{int(y.max())}")
    return torch.stack(labels)
