"""5 · vectors: add from the gallery, strengths, remove, compose by name (API), refine (streamed), files."""

from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr

from webapp.actions.vectors import parse_active
from webapp.errors import user_errors
from webapp.events.common import HEAVY, LIGHT, PRIVATE, QUIET, Updates, Wiring, stream_updates
from webapp.outcomes import EditOutcome, Progress
from webapp.session import SessionBox

EDITOR_SETTLE_S = 0.8  # after a strength change, redraw the paint canvas once the slider has been still this long


def wire_vectors(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_gallery_select(box: SessionBox, opacity: float, evt: gr.SelectData) -> Updates:
        session = w.session(box)
        _, names = studio.gallery(session)
        if evt.index is None or not 0 <= int(evt.index) < len(names):
            return gr.skip()
        studio.add_vector(session, names[int(evt.index)])
        return w.show(box, opacity)

    w.then_editor(p.gallery.select(on_gallery_select, [p.box, p.opacity], w.view_outputs, **PRIVATE, **LIGHT))

    @user_errors
    def on_remove(box: SessionBox, opacity: float, evt: gr.EventData) -> Updates:
        slots = [button.elem_id for button in p.removes]  # the trigger may be the session's copy of the button
        studio.remove_vector(w.session(box), slots.index(evt.target.elem_id))
        return w.show(box, opacity)

    w.then_editor(gr.on([button.click for button in p.removes], on_remove, [p.box, p.opacity], w.view_outputs,
                        **PRIVATE, **LIGHT))

    @user_errors
    def on_apply(box: SessionBox, names: str, scales: str, opacity: float) -> Updates:
        studio.apply_vectors(w.session(box), parse_active(names, scales))
        return w.show(box, opacity)

    w.then_editor(p.api_apply.click(on_apply, [p.box, p.api_names, p.api_scales, p.opacity], w.view_outputs,
                                    api_name="apply_vectors", **LIGHT))
    wire_strengths(w)
    wire_refine(w)
    wire_vector_files(w)


def wire_strengths(w: Wiring) -> None:
    """A strength change shows the new picture first; its segmentation follows in a chained event, and the
    canvas and history strip catch up once the slider has been still for a moment: redrawing them for every
    move would hold up the next one (the slots stay as the user left them)."""
    p, studio = w.page, w.studio

    @user_errors
    def on_strengths(box: SessionBox, *values: float) -> Updates:
        session = w.session(box)
        studio.set_strengths(session, values, with_labels=False)
        view = studio.view(session, labels=False)
        return {p.seg_image: view.image, p.vec_image: view.image, p.history_text: view.history_text,
                p.undo_btn: gr.Button(interactive=view.can_undo), p.redo_btn: gr.Button(interactive=view.can_redo)}

    @user_errors
    def on_strength_labels(box: SessionBox, opacity: float) -> Updates:
        view = studio.view(w.session(box), opacity)
        return {p.seg_labels: view.label_picture, p.seg_overlay: view.overlay}

    @user_errors
    def on_strengths_settled(box: SessionBox) -> Updates:
        session = w.session(box)
        current = session.current
        time.sleep(EDITOR_SETTLE_S)
        if session.current is not current:  # moved again meanwhile: that event catches up instead
            return gr.skip()
        return {p.editor: w.editor_update(box), p.history: studio.view(session).history}

    # a render of one picture: straight to the server, not through the job queue
    gr.on([slider.release for slider in p.sliders], on_strengths, [p.box, *p.sliders],
          [p.seg_image, p.vec_image, p.history_text, p.undo_btn, p.redo_btn], queue=False, **QUIET).success(
        on_strength_labels, [p.box, p.opacity], [p.seg_labels, p.seg_overlay], queue=False, **QUIET).success(
        on_strengths_settled, [p.box], [p.editor, p.history], **QUIET, **LIGHT)


def wire_refine(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_refine(box: SessionBox, steps: float, opacity: float,
                  progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's way to ask for a progress bar)
        def preview(item: Progress) -> Updates:  # the preview goes where results go
            return {p.refine_status: f"Refining: step {item.step}/{item.steps}, loss {item.loss:.4f}",
                    p.vec_image: item.preview}

        def outcome(item: EditOutcome) -> Updates:
            f = item.figures
            return {p.refine_status: f"Refined in {f['steps']} steps: region IoU {f['region_iou']:.2f}, change "
                                     f"outside {100 * f['change_outside']:.1f}%.", **w.show(box, opacity)}

        yield from stream_updates(studio.refine(w.session(box), int(steps)), progress, "Refining", preview, outcome)

    refine = p.refine_btn.click(on_refine, [p.box, p.refine_steps, p.opacity], [p.refine_status, *w.view_outputs],
                                api_name="refine", show_progress_on=[p.refine_status], **HEAVY)
    w.jobs.append(refine)
    w.then_editor(refine)


def wire_vector_files(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_import(box: SessionBox, path: str | None) -> Updates:
        if not path:
            return gr.skip()
        vec = studio.import_vector(w.session(box), path)
        return {p.import_status: f"Imported **{html.escape(vec.name)}**.", p.import_file: None,
                **w.gallery_updates(box)}

    p.import_file.upload(on_import, [p.box, p.import_file],
                         [p.import_status, p.import_file, p.gallery, p.export_choice], api_name="import_vector",
                         **LIGHT)

    @user_errors
    def on_export_vector(box: SessionBox, name: str | None) -> Any:
        return str(studio.export_vector(w.session(box), name or ""))

    p.export_vec_btn.click(on_export_vector, [p.box, p.export_choice], p.export_vec_file, api_name="export_vector",
                           **LIGHT)
