"""Section 4 · edit: learn the editing vector that realises a painting, and keep it as a named vector."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace

import numpy as np
import torch

from editgan_core.defaults import MAX_STEPS
from editgan_core.pipeline import InputError
from editgan_core.vectors import EditVector
from editgan_core.vectors.vector import check_text
from webapp import gpu_tasks
from webapp.actions.base import whole_number_in
from webapp.actions.paint import PaintActions
from webapp.outcomes import EditOutcome, Notice, Progress
from webapp.session import Session, Step


class EditActions(PaintActions):
    def edit(self, session: Session, value: Mapping[str, object] | np.ndarray | None,
             steps: int | None = None) -> Iterator[Progress | Notice | EditOutcome]:
        """Learn the editing vector that turns the current segmentation into the painted one.

        ``steps`` defaults to the model's (``EditGANPipeline.defaults.edit_steps``).
        """
        pipe = self.require_segmenter(session)
        steps = whole_number_in(pipe.defaults.edit_steps if steps is None else steps, "the number of edit steps", 1,
                                MAX_STEPS)
        current = self._require_labelled(session)
        paint = self.read_paint(session, value)
        notice = self.paint_notice(session, paint)
        if notice:
            yield notice
        if not paint.changed_pixels:
            raise InputError("the painted label map is identical to the current one: paint a change first (step 3)")
        job = gpu_tasks.track(session.new_job())
        result = yield from self._gpu_result(gpu_tasks.edit_task(
            self.gpu_models, session.bundle_id, steps, current.latent, paint.labels, job, self.preview_every_s,
            self.tuned_weights(session)))
        if result.stopped:
            yield Notice(f"the edit stopped after {result.steps_done} of {steps} steps; kept the best result so far")
        vector = EditVector(delta=result.delta, name="edit", bundle_id=session.bundle_id, class_ids=result.class_ids,
                            source="learned")
        step = session.history.push(Step("edit", f"edit ({self._class_names(pipe, result.class_ids)})",
                                         result.latent.detach().cpu(), result.render.image, result.render.labels,
                                         vector=vector))
        session.last_edit = result
        session.last_paint = (current.latent, paint.labels)
        figures = {k: round(float(v), 4) for k, v in result.metrics.items()}
        figures.update(steps=result.steps_done, changed_pixels=paint.changed_pixels, classes=result.class_ids)
        yield EditOutcome(step, current.image, result.region, result, figures)

    def save_vector(self, session: Session, name: str, description: str = "") -> EditVector:
        """Keep the latest learned edit in the session's vector library."""
        check_text(name, description)
        if session.last_edit is None:
            raise InputError("learn an edit first (step 4), then save it as a vector")
        if not (name or "").strip():
            raise InputError("give the vector a name")
        edit = session.last_edit
        vec = EditVector(delta=edit.delta, name=name.strip(), description=(description or "").strip(),
                         bundle_id=session.bundle_id, class_ids=edit.class_ids, source="learned",
                         extra={"metrics": {k: float(v) for k, v in edit.metrics.items()}})
        saved = session.library.save(vec)
        current = session.current
        if current is not None and current.kind == "edit" and current.vector is not None and torch.equal(
                current.vector.delta, saved.delta):
            session.history.replace(current, replace(current, vector=saved))  # its export carries the name
        return saved
