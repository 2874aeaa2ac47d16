"""What the page shows of a session: the current picture, its segmentation, the history strip (and, through
``ModelActions``, what it says about the model)."""

from __future__ import annotations

from typing import Any

import numpy as np

from webapp import labels as lab
from webapp.actions.base import number_in
from webapp.actions.model import ModelActions
from webapp.actions.vectors import VectorActions
from webapp.outcomes import View
from webapp.session import Session

HISTORY_STRIP = 12  # steps shown as pictures in the history strip
STRIP_MIN_SIDE = 64  # small models' steps are enlarged (crisply) in the strip


class ViewActions(VectorActions, ModelActions):
    def history_start(self, session: Session) -> int:
        """Index of the first step in the history strip: the last ``HISTORY_STRIP`` steps around the current one."""
        return max(0, session.history.index - HISTORY_STRIP + 2)

    def view(self, session: Session, opacity: float = 0.5, labels: bool = True) -> View:
        """What the page shows; ``labels=False`` skips segmenting a step whose labels were left for later."""
        opacity = number_in(opacity, "the overlay opacity", 0.0, 1.0)
        pipe = self.pipeline(session)
        palette = pipe.bundle.palette
        current = self.current_with_labels(session) if labels else session.current
        history = session.history
        start = self.history_start(session)
        strip = []
        for i, step in enumerate(history.steps[start: start + HISTORY_STRIP], start=start):
            marker = "▶ " if i == history.index else ""
            picture = lab.upscale(step.image, max(1, -(-STRIP_MIN_SIDE // step.image.shape[0])))
            strip.append((picture, f"{marker}{i + 1}. {step.label}"))
        text = (f"Step {history.index + 1} of {len(history.steps)}: **{current.label}**" if current
                else "No picture yet.")
        if current is None:
            return View(None, None, None, None, None, [], strip, text, False, False, start)
        pictures: dict[str, Any] = {"label_picture": None, "overlay": None, "editor": None}
        if current.labels is not None:
            pictures = {
                "label_picture": lab.colorize(current.labels, palette),
                "overlay": lab.overlay(current.image, current.labels, palette, opacity),
                "editor": lab.editor_value(current.labels, palette, self.editor_factor(pipe)),
            }
        return View(current.image, current.labels, active=self.active(session), history=strip, history_text=text,
                    can_undo=history.can_undo, can_redo=history.can_redo, history_start=start, **pictures)

    def overlay(self, session: Session, opacity: float) -> np.ndarray | None:
        opacity = number_in(opacity, "the overlay opacity", 0.0, 1.0)
        current = self.current_with_labels(session)
        if current is None or current.labels is None:
            return None
        return lab.overlay(current.image, current.labels, self.pipeline(session).bundle.palette, opacity)
