"""Section 1 · image: a random face of the model, or a photo put into W+."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from editgan_core.losses import image_psnr
from editgan_core.optim import StepInfo
from editgan_core.pipeline import EmbedResult, InputError, prepare_image
from webapp.actions.base import StudioBase
from webapp.outcomes import EmbedOutcome, Notice, Progress
from webapp.session import Session, Step
from webapp.streaming import stream_job


class ImageActions(StudioBase):
    def sample(self, session: Session, seed: int, truncation: float = 0.7) -> Step:
        """A random face of the model, reproducible from the seed."""
        pipe = self.pipeline(session)
        seed = int(seed)
        if not 0 <= seed < 2**31:
            raise InputError("the seed must be between 0 and 2147483647")
        latent = pipe.sample_latent(seed, float(truncation))
        return session.history.push(self._step(pipe, "sample", f"sample seed {seed}", latent))

    def embed(self, session: Session, image: Any, steps: int = 0) -> Iterator[Progress | Notice | EmbedOutcome]:
        """Put a photo into W+: encoder only (``steps=0``) or encoder + ``steps`` optimisation steps."""
        if image is None:
            raise InputError("upload a photo (PNG, JPEG or WebP) or pick an example first")
        pipe = self.pipeline(session)
        pixels = prepare_image(image, pipe.resolution)
        steps = max(0, int(steps))
        if steps == 0:
            step = self._step(pipe, "embed", "embed (encoder)", pipe.encode(pixels), source=pixels)
            session.history.push(step)
            yield EmbedOutcome(step, pixels, image_psnr(step.image, pixels), 0, False)
            return
        job = session.new_job()

        def work(callback: Callable[[StepInfo], None]) -> EmbedResult:
            return pipe.embed(pixels, steps=steps, callback=callback, should_stop=job.is_set)

        def preview(latent: torch.Tensor) -> np.ndarray:
            return pipe.render(latent.detach().cpu(), with_labels=False).image

        result = yield from stream_job(work, preview, job, self.preview_every_s)
        if result.stopped:
            yield Notice(f"embedding stopped after {result.steps_done} of {steps} steps; kept the best result so far")
        step = Step("embed", f"embed ({result.steps_done} steps)", result.latent.detach().cpu(), result.render.image,
                    result.render.labels, source=pixels)  # the core's render of the result: no second one
        session.history.push(step)
        yield EmbedOutcome(step, pixels, float(result.psnr), result.steps_done, result.stopped)
