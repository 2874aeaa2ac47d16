"""Thin callbacks that connect the page's components to ``Studio``, one module per notebook section.

Each callback gets the session from its ``gr.State`` box, calls one action (``webapp.controller``)
and returns the components it changes. Heavy optimisations share the "gpu" concurrency group (one
at a time on a laptop or a single GPU); light events (renders, bookkeeping) run side by side.
Named events are the API (``docs/walkthrough.md``).
"""

from __future__ import annotations

from webapp.controller import Studio
from webapp.events.annotate import wire_annotate
from webapp.events.common import Wiring
from webapp.events.edit import wire_edit
from webapp.events.history import wire_history
from webapp.events.image import wire_image
from webapp.events.model import wire_model
from webapp.events.paint import wire_paint
from webapp.events.photo import wire_photo
from webapp.events.presets import wire_presets
from webapp.events.segmentation import wire_segmentation
from webapp.events.tuning import wire_tuning
from webapp.events.vectors import wire_vectors
from webapp.layout import Page
from webapp.outcomes import View
from webapp.session import SessionBox


def wire(page: Page, studio: Studio, init: View) -> None:
    """Attach every event of the page (call inside the ``gr.Blocks`` context)."""
    w = Wiring(page, studio, init.labels.tobytes() if init.labels is not None else None)
    sections = (wire_image, wire_tuning, wire_photo, wire_segmentation, wire_paint, wire_edit, wire_presets,
                wire_vectors, wire_history, wire_model, wire_annotate)
    for section in sections:
        section(w)
    wire_cancel(w)


def wire_cancel(w: Wiring) -> None:
    """The session's stop flag ends the optimisation loop; Gradio's ``cancels`` ends the event."""
    p = w.page

    def on_cancel(box: SessionBox) -> str:
        stopped = box.session.cancel() if box.session is not None else False
        return "Cancelled." if stopped else "Nothing was running."

    for button, status in ((p.edit_cancel, p.edit_status), (p.embed_cancel, p.embed_status),
                           (p.tune_cancel, p.embed_status), (p.refine_cancel, p.refine_status)):
        api = {"api_name": "cancel"} if button is p.edit_cancel else {"api_visibility": "private"}
        button.click(on_cancel, [p.box], status, cancels=w.jobs, queue=False, **api)
