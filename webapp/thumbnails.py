"""Gallery pictures of what each vector does: a reference face with the vector applied.

Rendering is cheap but not free on a CPU at higher resolutions, and every session shows the same
presets, so pictures are cached server-wide by the vector's content, not its name.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch

from editgan_core.pipeline import EditGANPipeline, InputError
from editgan_core.vectors import EditVector
from webapp.labels import upscale

THUMB_MIN_SIDE = 96  # small models are enlarged (crisply) so the gallery does not blur them
CACHE_ITEMS = 512
OUT_OF_RANGE_GREY = 128


def vector_key(bundle_id: str, vec: EditVector, scale: float) -> str:
    digest = hashlib.sha1(vec.delta.numpy().tobytes()).hexdigest()[:16]
    return f"{bundle_id}:{digest}:{scale:.4f}"


class ThumbnailCache:
    """(bundle, vector content, scale) -> uint8 picture, least recently used dropped first."""

    def __init__(self, limit: int = CACHE_ITEMS) -> None:
        self.limit = limit
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._references: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    def reference(self, pipe: EditGANPipeline) -> torch.Tensor:
        """The face every thumbnail starts from: the model's average face."""
        key = pipe.bundle.id
        with self._lock:
            if key not in self._references:
                self._references[key] = pipe.mean_latent()
            return self._references[key]

    def get_many(self, pipe: EditGANPipeline, vectors: Sequence[EditVector],
                 render: Callable[[list[torch.Tensor]], list[np.ndarray]]) -> list[np.ndarray]:
        """One picture per vector at its default strength; the uncached ones made in one ``render`` call
        (latents in, pictures out: a single GPU task on ZeroGPU however many vectors are new)."""
        keys = [vector_key(pipe.bundle.id, vec, vec.default_scale) for vec in vectors]
        with self._lock:
            found = {k: self._items[k] for k in keys if k in self._items}
            for k in found:
                self._items.move_to_end(k)
        missing, latents = [], []
        for key, vec in zip(keys, vectors, strict=True):
            if key in found:
                continue
            try:
                latents.append(pipe.apply(self.reference(pipe), [(vec, vec.default_scale)]))
                missing.append(key)
            except InputError:  # out of proportion to the model (its strength can still be lowered): a blank tile
                side = max(THUMB_MIN_SIDE, pipe.resolution)
                found[key] = np.full((side, side, 3), OUT_OF_RANGE_GREY, np.uint8)
        if missing:
            for key, image in zip(missing, render(latents), strict=True):
                found[key] = upscale(image, max(1, -(-THUMB_MIN_SIDE // image.shape[0])))
            with self._lock:
                self._items.update((k, found[k]) for k in missing)
                while len(self._items) > self.limit:
                    self._items.popitem(last=False)
        return [found[k] for k in keys]
