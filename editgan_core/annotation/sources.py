"""Where annotation images come from: the generator's own samples (their latents are exact) or photos (embedded).

A generated sample needs no embedding: its W+ latent is known, so its features are exactly those of
the picture being painted. A photo is embedded once when it is added, and the annotation keeps that
latent; how well it was reconstructed (PSNR) is recorded, since a poor embedding teaches the segmenter
features of a different picture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from editgan_core.annotation.store import AnnotationError, AnnotationStore, Entry
from editgan_core.optim import StepInfo
from editgan_core.pipeline import EmbedResult, prepare_image

MAX_SAMPLES_AT_ONCE = 64
MAX_SEED = 2**31 - 1


def check_samples(count: int, seed: int, truncation: float) -> tuple[list[int], float]:
    """The seeds of a request for ``count`` samples from ``seed``, and its truncation; refused when out of bounds."""
    count, seed = int(count), int(seed)
    if not 1 <= count <= MAX_SAMPLES_AT_ONCE:
        raise AnnotationError(f"draw between 1 and {MAX_SAMPLES_AT_ONCE} samples at once, not {count}")
    if not 0 <= seed <= MAX_SEED - count:
        raise AnnotationError(f"the first seed must be between 0 and {MAX_SEED - count}")
    if not 0.0 <= float(truncation) <= 1.0:
        raise AnnotationError("truncation must be between 0 and 1")
    return list(range(seed, seed + count)), float(truncation)


def draw_samples(pipeline, seeds: Sequence[int], truncation: float) -> list[tuple[torch.Tensor, np.ndarray]]:
    """(CPU latent, picture) of each seed: the model's part of adding samples (the store's is ``keep_samples``)."""
    drawn = []
    for s in seeds:
        latent = pipeline.sample_latent(int(s), float(truncation))
        drawn.append((latent, pipeline.render(latent, with_labels=False).image))
    return drawn


def keep_samples(store: AnnotationStore, seeds: Sequence[int], truncation: float,
                 drawn: Sequence[tuple[torch.Tensor, np.ndarray]]) -> list[Entry]:
    """Add drawn samples (``draw_samples``) to the set, each named by its seed."""
    return [store.add(image, latent, {"kind": "sample", "seed": int(s), "truncation": float(truncation)}, f"seed{s}")
            for s, (latent, image) in zip(seeds, drawn, strict=True)]


def add_samples(store: AnnotationStore, pipeline, count: int = 16, seed: int = 0,
                truncation: float = 0.7) -> list[Entry]:
    """``count`` generated images with seeds ``seed``, ``seed + 1``, ... and their latents."""
    seeds, truncation = check_samples(count, seed, truncation)
    return keep_samples(store, seeds, truncation, draw_samples(pipeline, seeds, truncation))


def keep_photo(store: AnnotationStore, pixels: np.ndarray, result: EmbedResult, name: str = "photo") -> Entry:
    """Add an embedded photo (``pixels``: as the model sees it, which is what is painted) with its latent and
    how well the embedding reconstructs it."""
    source = {"kind": "photo", "file": str(name)[:120], "embed_steps": result.steps_done,
              "embed_psnr": round(float(result.psnr), 2)}
    return store.add(np.asarray(pixels), result.latent, source, "photo")


def add_photo(store: AnnotationStore, pipeline, image, steps: int | None = None, name: str = "photo",
              callback: Callable[[StepInfo], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> Entry:
    """Embed a photo (encoder + ``steps`` optimisation steps) and add it with that latent (``keep_photo``)."""
    pixels = prepare_image(image, pipeline.resolution)
    result = pipeline.embed(pixels, steps=steps, callback=callback, should_stop=should_stop)
    return keep_photo(store, pixels, result, name)
