"""Embedded W+ latents kept on disk by key, so benchmarks and preset scripts embed each render once.

Embedding a 64-px face takes seconds on a CPU and every benchmark or preset run needs hundreds of them;
the same seeds come back run after run (held-out faces, their true targets, preset training pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

BATCH = 16  # renders embedded together (``EditGANPipeline.embed_many``)


class EmbeddingCache:
    """Embedded latents by key, kept in one ``torch.save`` file (loaded with ``weights_only=True``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.latents: dict[str, torch.Tensor] = {}
        if path is not None and path.is_file():
            self.latents = torch.load(path, weights_only=True)

    def embed(self, pipeline, keys: Sequence[str], images: Sequence[np.ndarray], steps: int) -> torch.Tensor:
        """Latents (B, n_latent, style_dim) of ``images``, embedding only the keys not stored yet."""
        missing = [i for i, k in enumerate(keys) if k not in self.latents]
        for start in range(0, len(missing), BATCH):
            chunk = missing[start:start + BATCH]
            for i, latent in zip(chunk, pipeline.embed_many(np.stack([images[i] for i in chunk]), steps),
                                 strict=True):
                self.latents[keys[i]] = latent
        if missing and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.latents, self.path)
        return torch.stack([self.latents[k] for k in keys])

    def embed_pairs(self, pipeline, seeds: Sequence[int], attribute: str, value: float,
                    faces: Sequence[np.ndarray], targets: Sequence[np.ndarray], steps: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents of renders as drawn (keyed by seed) and with ``attribute`` set to ``value`` (keyed by seed,
        attribute and value): one key scheme for the benchmarks' faces and the presets' training pairs."""
        return (self.embed(pipeline, [f"{s}" for s in seeds], faces, steps),
                self.embed(pipeline, [f"{s}:{attribute}={value:g}" for s in seeds], targets, steps))
