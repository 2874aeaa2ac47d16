"""Training images: rendered on the fly from a procedural domain, or read from a folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from editgan_core.utils import IMAGE_SUFFIXES, to_tensor

# Seeds below this are reserved for evaluation, presets and annotations, never trained on.
TRAIN_SEED_BASE = 1_000_000


class DomainStream(IterableDataset):
    """Endless batches from a procedural domain; each worker walks its own seed range.

    ``extremes`` > 0 sets each editable attribute (the domain's ``ATTRIBUTE_RANGES``) of a face to one
    end of its range with that probability, decided by the face's seed. A GAN drops the tails of its
    data first, and an edit can only reach what the generator can draw: more faces at the ends give
    the discriminator (and ``train.gan --recon``) more of exactly the images it would otherwise lose.
    """

    def __init__(self, domain: str, size: int, batch: int, start_seed: int = TRAIN_SEED_BASE,
                 extremes: float = 0.0) -> None:
        from editgan_core.domains import get_domain

        self.domain = get_domain(domain)
        if not 0.0 <= extremes <= 1.0:
            raise ValueError(f"extremes is a probability, got {extremes}")
        if extremes and not hasattr(self.domain, "ATTRIBUTE_RANGES"):
            raise ValueError(f"domain {domain!r} has no editable attribute ranges to push to their extremes")
        self.size = size
        self.batch = batch
        self.start_seed = start_seed
        self.extremes = extremes

    def attributes(self, seed: int) -> dict[str, float]:
        """The seed's face, with editable attributes moved to an end of their range at rate ``extremes``."""
        attrs = self.domain.sample_attributes(seed)
        u = np.random.default_rng([seed, 1]).random((len(self.domain.ATTRIBUTE_RANGES), 2))
        for (name, (low, high)), (pick, side) in zip(self.domain.ATTRIBUTE_RANGES.items(), u, strict=True):
            if pick < self.extremes:
                attrs[name] = low if side < 0.5 else high
        return attrs

    def render(self, seeds: range) -> np.ndarray:
        if not self.extremes:
            return self.domain.render_batch(seeds, self.size)[0]
        return np.stack([self.domain.render(self.attributes(s), self.size).image for s in seeds])

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        seed = self.start_seed + worker * self.batch
        while True:
            yield to_tensor(self.render(range(seed, seed + self.batch)))
            seed += self.batch * workers


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Any photo -> (size, size, 3) uint8: EXIF-rotated, centre-cropped square, resized."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        return np.array(im, dtype=np.uint8)


class ImageFolder(Dataset):
    """Every image below ``root`` (recursive), square-cropped to ``size``, with random flips."""

    def __init__(self, root: str | Path, size: int, flip: bool = True) -> None:
        self.paths = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
        self.size = size
        self.flip = flip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = load_image(self.paths[index], self.size)
        if self.flip and torch.rand(()) < 0.5:
            image = image[:, ::-1].copy()
        return to_tensor(image[None])[0]


def infinite_batches(loader) -> Iterator[torch.Tensor]:
    while True:
        yield from loader
