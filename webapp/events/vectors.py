"""5 · vectors: add from the gallery, strengths, remove, compose by name (API), refine (streamed), files, and
renaming or deleting your own vectors."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from editgan_core.pipeline import InputError
from webapp.actions.vectors import parse_active
from webapp.errors import USER_ERRORS, user_errors
from webapp.events.common import HEAVY, LIGHT, PRIVATE, QUIET, Updates, Wiring, stream_updates
from webapp.outcomes import EditOutcome, Progress
from webapp.session import SessionBox

EDITOR_SETTLE_S = 1.5  # the paint canvas follows once the strengths have been still this long (slow to rebuild)


def wire_vectors(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_gallery_select(box: SessionBox, opacity: float, evt: gr.SelectData) -> Updates:
        session = w.session(box)
        _, names = studio.gallery(session)
        if evt.index is None or not 0 <= int(evt.index) < len(names):
            return gr.skip()
        name = names[int(evt.index)]
        studio.add_vector(session, name)
        return {**w.show(box, opacity), p.vector_choice: gr.Dropdown(value=name)}  # also ready to rename/delete

    w.then_editor(p.gallery.select(on_gallery_select, [p.box, p.opacity], [*w.view_outputs, p.vector_choice],
                                   **PRIVATE, **LIGHT))

    @user_errors
    def on_remove(box: SessionBox, opacity: float, evt: gr.EventData) -> Updates:
        slots = [button.elem_id for button in p.removes]  # the trigger may be the session's copy of the button
        studio.remove_vector(w.session(box), slots.index(evt.target.elem_id))
        return w.show(box, opacity)

    w.then_editor(gr.on([button.click for button in p.removes], on_remove, [p.box, p.opacity], w.view_outputs,
                        **PRIVATE, **LIGHT))

    @user_errors
    def on_apply(box: SessionBox, names: str, scales: str, opacity: float) -> Updates:
        studio.apply_newest(w.session(box), parse_active(names, scales))  # a newer request wins; all show it
        return w.show(box, opacity)

    w.then_editor(p.api_apply.click(on_apply, [p.box, p.api_names, p.api_scales, p.opacity], w.view_outputs,
                                    api_name="apply_vectors", **LIGHT))
    wire_strengths(w)
    wire_refine(w)
    wire_vector_files(w)
    wire_vector_library(w)


def wire_strengths(w: Wiring) -> None:
    """A strength change shows the new picture first; its segmentation follows in a chained event, and the
    canvas and history strip catch up once the strengths have been still for a moment: redrawing them for every
    move would hold up the next one (the slots stay as the user left them).

    Every way of changing a value fires ``input`` and redraws: dragging, arrow keys, typing a number (the
    sliders have no reset button, which would fire ``release`` only). The page sends one change at a time and,
    while one runs, keeps only the newest for afterwards (``always_last``); the session orders what still
    overlaps (``Studio.set_strengths``), so the last value sent is the final state.
    """
    p, studio = w.page, w.studio

    @user_errors
    def on_strengths(box: SessionBox, *values: float) -> Updates:
        session = w.session(box)
        before = session.current
        step = studio.set_strengths(session, values, with_labels=False)
        if step is None or step is before:
            return gr.skip()  # a newer change has been shown already, or nothing changed
        session.strengths_still.touch()
        view = studio.view(session, labels=False)
        return {p.seg_image: view.image, p.vec_image: view.image, p.history_text: view.history_text,
                p.undo_btn: gr.Button(interactive=view.can_undo), p.redo_btn: gr.Button(interactive=view.can_redo)}

    @user_errors
    def on_strength_labels(box: SessionBox, opacity: float) -> Updates:
        session = w.session(box)
        shown = session.current.latent if session.current is not None else None
        view = studio.view(session, opacity)
        if session.current is None or session.current.latent is not shown:
            return gr.skip()  # changed meanwhile: that change's own event shows its segmentation
        return {p.seg_labels: view.label_picture, p.seg_overlay: view.overlay}

    @user_errors
    def on_strengths_settled(box: SessionBox) -> Updates:
        session = w.session(box)
        if not session.strengths_still.wait_still(EDITOR_SETTLE_S):
            return gr.skip()  # the event already waiting redraws once the strengths are still
        return {p.editor: w.editor_update(box), p.history: studio.view(session).history}

    # a render of one picture: straight to the server, not through the job queue
    picture = [p.seg_image, p.vec_image, p.history_text, p.undo_btn, p.redo_btn]
    gr.on([slider.input for slider in p.sliders], on_strengths, [p.box, *p.sliders], picture, queue=False,
          trigger_mode="always_last", **QUIET).success(
        on_strength_labels, [p.box, p.opacity], [p.seg_labels, p.seg_overlay], queue=False, **QUIET).success(
        on_strengths_settled, [p.box], [p.editor, p.history], queue=False, **QUIET)


def wire_refine(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_refine(box: SessionBox, steps: float, opacity: float, keep_parts: bool = False,
                  progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's way to ask for a progress bar)
        def preview(item: Progress) -> Updates:  # the preview goes where results go
            return {p.refine_status: f"Refining: step {item.step}/{item.steps}, loss {item.loss:.4f}",
                    p.vec_image: item.preview}

        def outcome(item: EditOutcome) -> Updates:
            f = item.figures
            kept = (f" Other parts' colour change {100 * f['colour_change_before']:.1f}% → "
                    f"{100 * f['colour_change_after']:.1f}%." if "colour_change_after" in f else "")
            return {p.refine_status: f"Refined in {f['steps']} steps: region IoU {f['region_iou']:.2f}, change "
                                     f"outside {100 * f['change_outside']:.1f}%.{kept}", **w.show(box, opacity)}

        yield from stream_updates(studio.refine(w.session(box), steps, bool(keep_parts)), progress, "Refining",
                                  preview, outcome)

    refine = p.refine_btn.click(on_refine, [p.box, p.refine_steps, p.opacity, p.refine_keep_parts],
                                [p.refine_status, *w.view_outputs],
                                api_name="refine", show_progress_on=[p.refine_status], **HEAVY)
    w.jobs.append(refine)
    w.then_editor(refine)


def wire_vector_files(w: Wiring) -> None:
    p, studio = w.page, w.studio

    def imported(box: SessionBox, path: str | None) -> Updates:
        if not path:
            return gr.skip()
        vec = studio.import_vector(w.session(box), path)
        return {p.import_status: f"Imported **{html.escape(vec.name)}**.", p.import_file: None,
                **w.gallery_updates(box)}

    @user_errors
    def on_upload(box: SessionBox, path: str | None) -> Updates:
        """In the page a refusal is said in the import's status: as an error it would cover the gallery too."""
        try:
            return imported(box, path)
        except USER_ERRORS as exc:
            return {p.import_status: f"Not imported: {html.escape(str(exc))}", p.import_file: None}

    outputs = [p.import_status, p.import_file, p.gallery, p.vector_choice]
    p.import_file.upload(on_upload, [p.box, p.import_file], outputs, **PRIVATE, **LIGHT)
    # the API's import: a refusal is an error there, as for every other endpoint
    p.api_import.click(user_errors(imported), [p.box, p.import_file], outputs, api_name="import_vector", **LIGHT)

    @user_errors
    def on_export_vector(box: SessionBox, name: str | None) -> Any:
        return str(studio.export_vector(w.session(box), name or ""))

    p.export_vec_btn.click(on_export_vector, [p.box, p.vector_choice], p.export_vec_file, api_name="export_vector",
                           **LIGHT)


def wire_vector_library(w: Wiring) -> None:
    """Rename and delete the user's vectors (delete asks first); presets are read-only, so their buttons are off.
    The gallery, the vector list and the active-vector sliders follow; the named events are the API."""
    p, studio = w.page, w.studio

    @user_errors
    def on_choice(box: SessionBox, name: str | None) -> Updates:
        preset = studio.is_preset(w.session(box), name) if name else None
        status = (f"**{html.escape(name)}** is a preset of this model: read-only (it can be exported)." if preset
                  else "")
        yours = preset is False
        return {p.rename_btn: gr.Button(interactive=yours), p.delete_btn: gr.Button(interactive=yours),
                p.delete_confirm: gr.Row(visible=False), p.choice_hint: status}

    p.vector_choice.change(on_choice, [p.box, p.vector_choice],
                           [p.rename_btn, p.delete_btn, p.delete_confirm, p.choice_hint], **QUIET, **LIGHT)

    @user_errors
    def on_rename(box: SessionBox, old: str | None, new: str | None, opacity: float) -> Updates:
        vec = studio.rename_vector(w.session(box), old or "", new or "")
        return {**w.gallery_updates(box, chosen=vec.name), p.rename_to: "",
                p.library_status: f"Renamed **{html.escape(old or '')}** to **{html.escape(vec.name)}**.",
                **w.show(box, opacity)}

    p.rename_btn.click(on_rename, [p.box, p.vector_choice, p.rename_to, p.opacity],
                       [p.library_status, p.rename_to, p.gallery, p.vector_choice, *w.view_outputs],
                       api_name="rename_vector", **LIGHT)

    @user_errors
    def on_delete_ask(box: SessionBox, name: str | None) -> Updates:
        preset = studio.is_preset(w.session(box), name) if name else None
        if preset is None:
            raise InputError(f"no vector named '{name}'" if name else "choose one of your vectors to delete")
        if preset:
            raise InputError(f"'{name}' is a preset of this model and cannot be deleted")
        return {p.delete_confirm: gr.Row(visible=True),
                p.delete_question: f"Delete **{html.escape(name)}** for good? This cannot be undone."}

    p.delete_btn.click(on_delete_ask, [p.box, p.vector_choice], [p.delete_confirm, p.delete_question], **PRIVATE,
                       **LIGHT)
    p.delete_no.click(lambda: gr.Row(visible=False), None, p.delete_confirm, queue=False, **PRIVATE)

    @user_errors
    def on_delete(box: SessionBox, name: str | None, opacity: float) -> Updates:
        gone, notice = studio.delete_vector(w.session(box), name or "")
        if notice is not None:
            gr.Warning(notice.text)
        return {p.library_status: f"Deleted **{html.escape(gone)}**.", p.delete_confirm: gr.Row(visible=False),
                **w.gallery_updates(box), **w.show(box, opacity)}

    p.delete_yes.click(on_delete, [p.box, p.vector_choice, p.opacity],
                       [p.library_status, p.delete_confirm, p.gallery, p.vector_choice, *w.view_outputs],
                       api_name="delete_vector", **LIGHT)
