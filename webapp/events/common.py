"""What every section's wiring shares: the session view as component updates, the chained paint-canvas
redraw, concurrency groups, and the one helper that streams a long action into the page.

Handlers return dictionaries keyed by the components they change (everything else in an event's
``outputs`` stays as it is); the ``outputs`` lists fix the order of the named API endpoints' results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from gradio.components import Component

from webapp.controller import Studio
from webapp.errors import user_errors
from webapp.layout import Page
from webapp.outcomes import Notice, Progress, View
from webapp.session import Session, SessionBox

LIGHT_CONCURRENCY = 4  # renders and bookkeeping: several at once is fine
PROGRESS_EVERY_S = 0.25  # progress-bar messages at most this often: each one is a page update
HEAVY = {"concurrency_id": "gpu", "concurrency_limit": 1}
LIGHT = {"concurrency_id": "light", "concurrency_limit": LIGHT_CONCURRENCY}
PRIVATE = {"api_visibility": "private"}
QUIET = {"api_visibility": "private", "show_progress": "hidden"}

Updates = dict[Component, Any]


def stream_updates(items: Iterable[Any], progress: gr.Progress, desc: str, on_preview: Callable[[Progress], Updates],
                   on_outcome: Callable[[Any], Updates]) -> Iterator[Updates]:
    """A studio action's stream (``Progress``…, ``Notice``s, one outcome) as page updates.

    Progress moves the progress bar (throttled by time, and with every preview); a preview and the
    outcome become component updates through ``on_preview`` / ``on_outcome``; notices become warnings.
    """
    shown = -float("inf")
    for item in items:
        if isinstance(item, Notice):
            gr.Warning(item.text)
        elif not isinstance(item, Progress):
            yield on_outcome(item)
        else:
            now = time.monotonic()
            if item.preview is not None or now - shown >= PROGRESS_EVERY_S:
                progress((item.step, item.steps), desc=desc)
                shown = now
            if item.preview is not None:
                yield on_preview(item)


@dataclass
class Wiring:
    """The page, the studio and what the sections' events share while they are attached."""

    page: Page
    studio: Studio
    initial_editor_key: bytes | None
    jobs: list[Any] = field(default_factory=list)  # the long events, for the Cancel buttons

    @property
    def view_outputs(self) -> list[Component]:
        """What every latent-changing event updates; the paint canvas follows in a chained event
        (``then_editor``): redrawing it is the slowest thing in the page and should not hold up the result."""
        p = self.page
        return [p.seg_image, p.seg_labels, p.seg_overlay, p.vec_image, p.history, p.history_text, p.undo_btn,
                p.redo_btn, p.no_active, *p.sliders, *p.removes]

    def session(self, box: SessionBox) -> Session:
        return self.studio.session(box)

    def view_updates(self, view: View) -> Updates:
        p = self.page
        updates: Updates = {
            p.seg_image: view.image, p.seg_labels: view.label_picture, p.seg_overlay: view.overlay,
            p.vec_image: view.image, p.history: view.history, p.history_text: view.history_text,
            p.undo_btn: gr.Button(interactive=view.can_undo), p.redo_btn: gr.Button(interactive=view.can_redo),
            p.no_active: gr.Markdown(visible=not view.active),
        }
        for i, (slider, remove) in enumerate(zip(p.sliders, p.removes, strict=True)):
            if i < len(view.active):
                name, scale = view.active[i]
                updates[slider] = gr.Slider(value=scale, label=name, visible=True, minimum=min(-3.0, scale),
                                            maximum=max(3.0, scale))
            else:
                updates[slider] = gr.Slider(visible=False)
            updates[remove] = gr.Button(visible=i < len(view.active))
        return updates

    def show(self, box: SessionBox, opacity: float) -> Updates:
        """The session's current step on every view output."""
        return self.view_updates(self.studio.view(self.session(box), opacity))

    def editor_update(self, box: SessionBox) -> Any:
        """The current label map on the paint canvas, sent only when it differs from what is shown."""
        session = self.session(box)
        current = session.current
        key = None if current is None or current.labels is None else current.labels.tobytes()
        if key is not None and key == session.ui_cache.get("editor", self.initial_editor_key):
            return gr.skip()
        session.ui_cache["editor"] = key
        return self.studio.view(session).editor

    def then_editor(self, event: Any) -> Any:
        """Chain the paint-canvas redraw after a latent-changing event."""
        return event.success(user_errors(self.editor_update), [self.page.box], [self.page.editor], **QUIET, **LIGHT)

    def gallery_updates(self, box: SessionBox, chosen: str | None = None) -> Updates:
        """The gallery and the list of vector names (with ``chosen`` picked in it)."""
        items, names = self.studio.gallery(self.session(box))
        return {self.page.gallery: items, self.page.vector_choice: gr.Dropdown(choices=names, value=chosen)}

    def session_action(self, action: Callable[[Session], Any]) -> Callable[[SessionBox, float], Updates]:
        """A callback that runs ``action(session)`` and shows the result."""

        @user_errors
        def run(box: SessionBox, opacity: float) -> Updates:
            action(self.session(box))
            return self.show(box, opacity)

        return run
