"""Where annotation images come from: the generator's own samples (their latents are exact) or photos (embedded).

A generated sample needs no embedding: its W+ latent is known, so its features are exactly those of
the picture being painted. A photo is embedded once when it is added, and the annotation keeps that
latent; how well it was reconstructed (PSNR) is recorded, since a poor embedding teaches the segmenter
features of a different picture.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from editgan_core.annotation.store import AnnotationError, AnnotationStore, Entry
from editgan_core.optim import StepInfo
from editgan_core.pipeline import prepare_image

MAX_SAMPLES_AT_ONCE = 64
MAX_SEED = 2**31 - 1


def add_samples(store: AnnotationStore, pipeline, count: int = 16, seed: int = 0,
                truncation: float = 0.7) -> list[Entry]:
    """``count`` generated images with seeds ``seed``, ``seed + 1``, ... and their latents."""
    count, seed = int(count), int(seed)
    if not 1 <= count <= MAX_SAMPLES_AT_ONCE:
        raise AnnotationError(f"draw between 1 and {MAX_SAMPLES_AT_ONCE} samples at once, not {count}")
    if not 0 <= seed <= MAX_SEED - count:
        raise AnnotationError(f"the first seed must be between 0 and {MAX_SEED - count}")
    if not 0.0 <= float(truncation) <= 1.0:
        raise AnnotationError("truncation must be between 0 and 1")
    added = []
    for s in range(seed, seed + count):
        latent = pipeline.sample_latent(s, float(truncation))
        image = pipeline.render(latent, with_labels=False).image
        added.append(store.add(image, latent, {"kind": "sample", "seed": s, "truncation": float(truncation)},
                               f"seed{s}"))
    return added


def add_photo(store: AnnotationStore, pipeline, image, steps: int | None = None, name: str = "photo",
              callback: Callable[[StepInfo], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> Entry:
    """Embed a photo (encoder + ``steps`` optimisation steps) and add it with that latent.

    The stored image is the photo as the model sees it (cropped and resized), which is what is painted.
    """
    pixels = prepare_image(image, pipeline.resolution)
    result = pipeline.embed(pixels, steps=steps, callback=callback, should_stop=should_stop)
    source = {"kind": "photo", "file": str(name)[:120], "embed_steps": result.steps_done,
              "embed_psnr": round(float(result.psnr), 2)}
    return store.add(np.asarray(pixels), result.latent, source, "photo")
