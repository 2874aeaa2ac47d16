"""Section 1 · image: a random face of the model, or a photo put into W+."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from editgan_core.defaults import MAX_STEPS
from editgan_core.pipeline import InputError
from webapp import gpu_tasks
from webapp.actions.base import number_in, whole_number_in
from webapp.actions.photo import PhotoActions
from webapp.outcomes import EmbedOutcome, Notice, Progress
from webapp.session import Session, Step

MAX_SEED = 2**31 - 1
MAX_TRUNCATION = 2.0  # 1 is no truncation; beyond 2 the pictures stop being faces


class ImageActions(PhotoActions):
    def sample(self, session: Session, seed: int, truncation: float = 0.7) -> Step:
        """A random face of the model, reproducible from the seed."""
        seed = whole_number_in(seed, "the seed", 0, MAX_SEED)
        truncation = number_in(truncation, "the truncation", 0.0, MAX_TRUNCATION)
        session.tuned = None  # a new picture: the tuned copy belonged to the last photo
        latent, render = gpu_tasks.sample_task(self.gpu_models, session.bundle_id, seed, truncation)
        return session.history.push(Step("sample", f"sample seed {seed}", latent, render.image, render.labels))

    def embed(self, session: Session, image: Any, steps: int = 0) -> Iterator[Progress | Notice | EmbedOutcome]:
        """Put a photo into W+: encoder only (``steps=0``) or encoder + ``steps`` optimisation steps."""
        if image is None:
            raise InputError("upload a photo (PNG, JPEG or WebP) or pick an example first")
        session.tuned = None
        pipe = self.pipeline(session)
        pixels = self.embed_pixels(session, image, pipe)  # the aligned crop if the photo was marked (photo.py)
        steps = whole_number_in(steps, "the number of embedding steps", 0, MAX_STEPS)
        if steps == 0 and pipe.encoder is None:
            steps = pipe.defaults.embed_steps
            yield Notice(f"this model has no encoder, so there is no fast embedding: optimising {steps} steps from "
                         "the average latent instead (slower)")
        job = gpu_tasks.track(session.new_job()) if steps else ""
        embedded = yield from self._gpu_result(gpu_tasks.embed_task(
            self.gpu_models, session.bundle_id, steps, pixels, job, self.preview_every_s))
        result, session.tuning_step_s = embedded.result, embedded.tuning_step_s
        if result.stopped:
            yield Notice(f"embedding stopped after {result.steps_done} of {steps} steps; kept the best result so far")
        label = f"embed ({result.steps_done} steps)" if steps else "embed (encoder)"
        step = Step("embed", label, result.latent, result.render.image, result.render.labels, source=pixels)
        session.history.push(step)  # the task's render of the result: no second one
        self.remember_embed(session, pixels, step)
        yield EmbedOutcome(step, pixels, float(result.psnr), result.steps_done, result.stopped, result.fidelity,
                           session.tuning_step_s)
