"""Section 1 · high fidelity: pivotal tuning of the session's own copy of the model around the embedded photo.

The session keeps the tuned synthesis weights (a CPU state dict) until a new image or another model; every
GPU task of the session (renders, edits, refinement) gets them and draws with a tuned copy of the model
(``webapp.gpu_tasks``), so vectors, presets and refinement work on it with the same W+ vectors. The main
process never runs a model (ZeroGPU).
"""

from __future__ import annotations

from collections.abc import Iterator

from editgan_core.losses import image_psnr
from editgan_core.pipeline import InputError
from editgan_core.pti import MAX_STEPS
from webapp import gpu_tasks
from webapp.actions.base import StudioBase
from webapp.outcomes import Notice, Progress, TuneOutcome
from webapp.session import Session, Step


class TuningActions(StudioBase):
    def tuning_estimate(self, session: Session, steps: int) -> float | None:
        """Estimated seconds of ``tune(steps)``: steps × the step time measured with the last embedding."""
        return None if session.tuning_step_s is None else max(0, int(steps)) * session.tuning_step_s

    def tune(self, session: Session, steps: int) -> Iterator[Progress | Notice | TuneOutcome]:
        """Fine-tune a copy of the model so the embedded photo's latent draws the photo (pivotal tuning)."""
        origin = session.history.origin()
        if origin is None or origin.kind not in ("embed", "reset") or origin.source is None:
            raise InputError("high fidelity needs an embedded photo: upload one and press Embed first (step 1)")
        steps = int(steps)
        if not 1 <= steps <= MAX_STEPS:
            raise InputError(f"pivotal tuning takes 1..{MAX_STEPS} steps, got {steps}")
        session.tuned = None  # tuned again from the original model, never on top of an earlier tuning
        job = gpu_tasks.track(session.new_job())
        result = yield from self._gpu_result(gpu_tasks.tune_task(
            self.gpu_models, session.bundle_id, steps, origin.latent, origin.source, job, self.preview_every_s))
        if result.stopped:
            yield Notice(f"pivotal tuning stopped after {result.steps_done} of {steps} steps; kept that tuning")
        if result.steps_done == 0:
            raise InputError("pivotal tuning was cancelled before its first step; the model is unchanged")
        session.tuned = result.state
        session.tuning_step_s = result.seconds / result.steps_done
        render = self.render(session, [origin.latent])[0]
        step = Step("embed", f"embed + pivotal tuning ({result.steps_done} steps)", origin.latent, render.image,
                    render.labels, source=origin.source)
        session.history.push(step)
        if session.photo.embedded is origin:  # an aligned photo's embedding: its edits still paste back
            session.photo.embedded = step
        yield TuneOutcome(step, image_psnr(origin.image, origin.source), image_psnr(render.image, origin.source),
                          result.seconds, result.steps_done, result.stopped)
