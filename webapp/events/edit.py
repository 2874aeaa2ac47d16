"""4 · edit: learn the edit from the painting (streamed), then save it as a vector."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from webapp import labels as lab
from webapp.errors import user_errors
from webapp.events.common import HEAVY, LIGHT, Updates, Wiring, stream_updates
from webapp.outcomes import EditOutcome, Progress
from webapp.session import SessionBox


def figures_text(f: dict[str, Any]) -> str:
    return (f"Done in {f['steps']} steps: region IoU **{f['region_iou']:.2f}**, mean change inside the region "
            f"{100 * f['change_inside']:.1f}%, outside {100 * f['change_outside']:.1f}%. "
            "Save it as a vector below to reuse it.")


def wire_edit(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_edit(box: SessionBox, value: Any, steps: float, opacity: float,
                progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's way to ask for a progress bar)
        session = w.session(box)
        before = session.current.image if session.current is not None else None

        def preview(item: Progress) -> Updates:
            return {p.compare: (before, item.preview),
                    p.edit_status: f"Learning: step {item.step}/{item.steps}, loss {item.loss:.4f}"}

        def outcome(item: EditOutcome) -> Updates:
            return {p.compare: (item.before, item.step.image), p.region_img: lab.outline(item.step.image, item.region),
                    p.figures: item.figures, p.edit_status: figures_text(item.figures), **w.show(box, opacity)}

        yield from stream_updates(studio.edit(session, value, steps), progress, "Learning the edit", preview,
                                  outcome)

    edit = p.edit_btn.click(on_edit, [p.box, p.editor, p.edit_steps, p.opacity],
                            [p.compare, p.region_img, p.figures, p.edit_status, *w.view_outputs], api_name="edit",
                            show_progress_on=[p.edit_status], **HEAVY)
    w.jobs.append(edit)
    w.then_editor(edit)

    @user_errors
    def on_save(box: SessionBox, name: str, description: str) -> Updates:
        vec = studio.save_vector(w.session(box), name, description)
        return {p.save_status: f"Saved **{html.escape(vec.name)}** to your vectors of this model (kept across "
                               "restarts).", **w.gallery_updates(box)}

    p.save_btn.click(on_save, [p.box, p.vec_name, p.vec_desc], [p.save_status, p.gallery, p.vector_choice],
                     api_name="save_vector", **LIGHT)
