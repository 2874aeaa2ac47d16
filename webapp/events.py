"""Thin callbacks that connect the page's components to ``Studio`` (the actions live in ``webapp.controller``).

Each callback gets the session from its ``gr.State`` box, calls one action and maps the result onto
components. Heavy optimisations share the "gpu" concurrency group (one at a time on a laptop or a
single GPU); light events (renders, bookkeeping) run side by side. Named events are the API.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any

import gradio as gr
import numpy as np

from webapp import labels as lab
from webapp.controller import EditOutcome, EmbedOutcome, Notice, Progress, Studio, View, parse_active
from webapp.errors import user_errors
from webapp.layout import FAST, Page, editor_component, legend_html, model_text
from webapp.session import SessionBox

try:  # ZeroGPU Spaces: a GPU is attached only while a decorated function runs; a no-op elsewhere
    import spaces

    gpu = spaces.GPU
except ImportError:  # laptops, CI, dedicated-GPU Spaces

    def gpu(fn: Callable | None = None, **_: Any) -> Callable:
        return fn if fn is not None else (lambda f: f)


LIGHT_CONCURRENCY = 4  # renders and bookkeeping: several at once is fine
EDITOR_SETTLE_S = 0.8  # after a strength change, redraw the paint canvas once the slider has been still this long
HEAVY = {"concurrency_id": "gpu", "concurrency_limit": 1}
LIGHT = {"concurrency_id": "light", "concurrency_limit": LIGHT_CONCURRENCY}
PRIVATE = {"api_visibility": "private"}
QUIET = {"api_visibility": "private", "show_progress": "hidden"}


def wire(p: Page, studio: Studio, init: View) -> None:
    """Attach every event of the page (call inside the ``gr.Blocks`` context)."""
    box, opacity = p.box, p.opacity
    # what every latent-changing event updates; the paint canvas follows in a chained event (``then_editor``)
    # because redrawing it is the slowest thing in the page and should not hold up the result picture
    view_outputs = [p.seg_image, p.seg_labels, p.seg_overlay, p.vec_image, p.history, p.history_text, p.undo_btn,
                    p.redo_btn, p.no_active, *p.sliders, *p.removes]
    image_outputs = [p.source_img, p.recon_img, p.embed_status]
    initial_editor_key = init.labels.tobytes() if init.labels is not None else None

    def view_updates(view: View) -> list[Any]:
        slots, removes = [], []
        for i in range(len(p.sliders)):
            if i < len(view.active):
                name, scale = view.active[i]
                slots.append(gr.Slider(value=scale, label=name, visible=True, minimum=min(-3.0, scale),
                                       maximum=max(3.0, scale)))
                removes.append(gr.Button(visible=True))
            else:
                slots.append(gr.Slider(visible=False))
                removes.append(gr.Button(visible=False))
        return [view.image, view.label_picture, view.overlay, view.image, view.history, view.history_text,
                gr.Button(interactive=view.can_undo), gr.Button(interactive=view.can_redo),
                gr.Markdown(visible=not view.active), *slots, *removes]

    def show(b: SessionBox, opacity_value: float) -> list[Any]:
        return view_updates(studio.view(studio.session(b), opacity_value))

    def skip_view() -> list[Any]:
        return [gr.skip()] * len(view_outputs)

    @user_errors
    def editor_update(b: SessionBox) -> Any:
        """The current label map on the paint canvas, sent only when it differs from what is shown."""
        session = studio.session(b)
        current = session.current
        key = None if current is None or current.labels is None else current.labels.tobytes()
        if key is not None and key == session.ui_cache.get("editor", initial_editor_key):
            return gr.skip()
        session.ui_cache["editor"] = key
        return studio.view(session).editor

    def then_editor(event: Any) -> Any:
        return event.success(editor_update, [box], [p.editor], **QUIET, **LIGHT)

    def gallery_updates(b: SessionBox) -> list[Any]:
        items, names = studio.gallery(studio.session(b))
        return [items, gr.Dropdown(choices=names, value=None)]

    def session_action(action: Callable) -> Callable:
        """A callback that runs ``action(session)`` and shows the result."""

        @user_errors
        def run(b: SessionBox, opacity_value: float):
            action(studio.session(b))
            return show(b, opacity_value)

        return run

    # -- 1 · image --------------------------------------------------------------------------------------
    @user_errors
    def on_sample(b: SessionBox, seed_value: float, trunc: float, opacity_value: float):
        step = studio.sample(studio.session(b), int(seed_value or 0), trunc)
        return [None, step.image, f"Sampled seed {int(seed_value or 0)}.", *show(b, opacity_value)]

    def on_lucky() -> int:
        return int(np.random.default_rng().integers(0, 2**31 - 1))

    @user_errors
    @gpu(duration=120)
    def on_embed(b: SessionBox, image: Any, mode_value: str, steps: float, opacity_value: float,
                 progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's way to ask for a progress bar)
        session = studio.session(b)
        for item in studio.embed(session, image, 0 if mode_value == FAST else int(steps)):
            if isinstance(item, Progress):
                progress((item.step, item.steps), desc="Embedding")
                if item.preview is not None:
                    status = f"Embedding: step {item.step}/{item.steps}, loss {item.loss:.4f}"
                    yield [gr.skip(), item.preview, status, *skip_view()]
            elif isinstance(item, Notice):
                gr.Warning(item.text)
            elif isinstance(item, EmbedOutcome):
                how = "encoder only" if item.steps_done == 0 else f"{item.steps_done} steps"
                status = f"Embedded ({how}): PSNR {item.psnr:.1f} dB."
                yield [item.source, item.step.image, status, *show(b, opacity_value)]

    sample_inputs = [box, p.seed, p.truncation, opacity]
    then_editor(p.sample_btn.click(on_sample, sample_inputs, image_outputs + view_outputs, api_name="sample",
                                   **LIGHT))
    then_editor(p.lucky_btn.click(on_lucky, None, p.seed, queue=False, **PRIVATE).then(
        on_sample, sample_inputs, image_outputs + view_outputs, **PRIVATE, **LIGHT))
    embed_event = p.embed_btn.click(on_embed, [box, p.upload, p.mode, p.embed_steps, opacity],
                                    image_outputs + view_outputs, api_name="embed",
                                    show_progress_on=[p.embed_status], **HEAVY)
    then_editor(embed_event)

    # -- 2 · segmentation ---------------------------------------------------------------------------------
    @user_errors
    def on_opacity(b: SessionBox, opacity_value: float):
        return studio.overlay(studio.session(b), opacity_value)

    opacity.change(on_opacity, [box, opacity], p.seg_overlay, **QUIET, **LIGHT)

    # -- 3 · paint ----------------------------------------------------------------------------------------
    @user_errors
    def on_paint(b: SessionBox, value: Any):
        session = studio.session(b)
        paint = studio.read_paint(session, value)
        notice = studio.paint_notice(session, paint)
        if notice:
            gr.Warning(notice.text)
        palette = studio.pipeline(session).bundle.palette
        picture = lab.outline(lab.colorize(paint.labels, palette), paint.changed, color=(255, 255, 255), dim=0.35)
        info = studio.describe_paint(session, paint)
        if paint.far_pixels:
            info += f" {paint.far_pixels} pixel(s) in no class colour were ignored."
        return picture, info

    p.paint_btn.click(on_paint, [box, p.editor], [p.target_img, p.paint_info], api_name="paint", **LIGHT)

    # -- 4 · edit -----------------------------------------------------------------------------------------
    @user_errors
    @gpu(duration=180)
    def on_edit(b: SessionBox, value: Any, steps: float, opacity_value: float,
                progress: gr.Progress = gr.Progress()):  # noqa: B008
        session = studio.session(b)
        before = session.current.image if session.current is not None else None
        for item in studio.edit(session, value, int(steps)):
            if isinstance(item, Progress):
                progress((item.step, item.steps), desc="Learning the edit")
                if item.preview is not None:
                    status = f"Learning: step {item.step}/{item.steps}, loss {item.loss:.4f}"
                    yield [(before, item.preview), gr.skip(), gr.skip(), status, *skip_view()]
            elif isinstance(item, Notice):
                gr.Warning(item.text)
            elif isinstance(item, EditOutcome):
                f = item.figures
                text = (f"Done in {f['steps']} steps: region IoU **{f['region_iou']:.2f}**, mean change inside "
                        f"the region {100 * f['change_inside']:.1f}%, outside {100 * f['change_outside']:.1f}%. "
                        "Save it as a vector below to reuse it.")
                region = lab.outline(item.step.image, item.region)
                yield [(item.before, item.step.image), region, f, text, *show(b, opacity_value)]

    edit_event = p.edit_btn.click(on_edit, [box, p.editor, p.edit_steps, opacity],
                                  [p.compare, p.region_img, p.figures, p.edit_status, *view_outputs], api_name="edit",
                                  show_progress_on=[p.edit_status], **HEAVY)
    then_editor(edit_event)

    @user_errors
    def on_save(b: SessionBox, name: str, description: str):
        vec = studio.save_vector(studio.session(b), name, description)
        return [f"Saved **{html.escape(vec.name)}** to your vectors (this session).", *gallery_updates(b)]

    p.save_btn.click(on_save, [box, p.vec_name, p.vec_desc], [p.save_status, p.gallery, p.export_choice],
                     api_name="save_vector", **LIGHT)

    # -- 5 · vectors --------------------------------------------------------------------------------------
    @user_errors
    def on_gallery_select(b: SessionBox, opacity_value: float, evt: gr.SelectData):
        session = studio.session(b)
        _, names = studio.gallery(session)
        if evt.index is None or not 0 <= int(evt.index) < len(names):
            return skip_view()
        studio.add_vector(session, names[int(evt.index)])
        return show(b, opacity_value)

    then_editor(p.gallery.select(on_gallery_select, [box, opacity], view_outputs, **PRIVATE, **LIGHT))

    # a strength change shows the new picture first; its segmentation follows in a chained event, and the
    # canvas and history strip catch up once the slider has been still for a moment: redrawing them for
    # every move would hold up the next one (the slots stay as the user left them)
    strength_outputs = [p.seg_image, p.vec_image, p.history_text, p.undo_btn, p.redo_btn]

    @user_errors
    def on_strengths(b: SessionBox, *values: float):
        session = studio.session(b)
        studio.set_strengths(session, values, with_labels=False)
        view = studio.view(session, labels=False)
        return [view.image, view.image, view.history_text, gr.Button(interactive=view.can_undo),
                gr.Button(interactive=view.can_redo)]

    @user_errors
    def on_strength_labels(b: SessionBox, opacity_value: float):
        view = studio.view(studio.session(b), opacity_value)
        return view.label_picture, view.overlay

    @user_errors
    def on_strengths_settled(b: SessionBox):
        session = studio.session(b)
        current = session.current
        time.sleep(EDITOR_SETTLE_S)
        if session.current is not current:  # moved again meanwhile: that event catches up instead
            return gr.skip(), gr.skip()
        return editor_update(b), studio.view(session).history

    for slider in p.sliders:  # a render of one picture: straight to the server, not through the job queue
        slider.release(on_strengths, [box, *p.sliders], strength_outputs, queue=False, **QUIET).success(
            on_strength_labels, [box, opacity], [p.seg_labels, p.seg_overlay], queue=False, **QUIET).success(
            on_strengths_settled, [box], [p.editor, p.history], **QUIET, **LIGHT)
    for i, button in enumerate(p.removes):
        then_editor(button.click(session_action(lambda s, i=i: studio.remove_vector(s, i)), [box, opacity],
                                 view_outputs, **PRIVATE, **LIGHT))

    @user_errors
    def on_apply(b: SessionBox, names: str, scales: str, opacity_value: float):
        studio.apply_vectors(studio.session(b), parse_active(names, scales))
        return show(b, opacity_value)

    then_editor(p.api_apply.click(on_apply, [box, p.api_names, p.api_scales, opacity], view_outputs,
                                  api_name="apply_vectors", **LIGHT))

    @user_errors
    @gpu(duration=120)
    def on_refine(b: SessionBox, steps: float, opacity_value: float,
                  progress: gr.Progress = gr.Progress()):  # noqa: B008
        for item in studio.refine(studio.session(b), int(steps)):
            if isinstance(item, Progress):
                progress((item.step, item.steps), desc="Refining")
                if item.preview is not None:
                    streamed = skip_view()
                    streamed[view_outputs.index(p.vec_image)] = item.preview  # the preview goes where results go
                    yield [f"Refining: step {item.step}/{item.steps}, loss {item.loss:.4f}", *streamed]
            elif isinstance(item, Notice):
                gr.Warning(item.text)
            elif isinstance(item, EditOutcome):
                f = item.figures
                status = (f"Refined in {f['steps']} steps: region IoU {f['region_iou']:.2f}, change outside "
                          f"{100 * f['change_outside']:.1f}%.")
                yield [status, *show(b, opacity_value)]

    refine_event = p.refine_btn.click(on_refine, [box, p.refine_steps, opacity], [p.refine_status, *view_outputs],
                                      api_name="refine", show_progress_on=[p.refine_status], **HEAVY)
    then_editor(refine_event)

    @user_errors
    def on_import(b: SessionBox, path: str | None):
        if not path:
            return [gr.skip()] * 4
        vec = studio.import_vector(studio.session(b), path)
        return [f"Imported **{html.escape(vec.name)}**.", None, *gallery_updates(b)]

    p.import_file.upload(on_import, [box, p.import_file], [p.import_status, p.import_file, p.gallery, p.export_choice],
                         api_name="import_vector", **LIGHT)

    @user_errors
    def on_export_vector(b: SessionBox, name: str | None):
        return str(studio.export_vector(studio.session(b), name or ""))

    p.export_vec_btn.click(on_export_vector, [box, p.export_choice], p.export_vec_file, api_name="export_vector",
                           **LIGHT)

    # -- cancel: the session's stop flag ends the optimisation loop; Gradio's ``cancels`` ends the event
    def on_cancel(b: SessionBox) -> str:
        stopped = b.session.cancel() if b.session is not None else False
        return "Cancelled." if stopped else "Nothing was running."

    for button, status in ((p.edit_cancel, p.edit_status), (p.embed_cancel, p.embed_status),
                           (p.refine_cancel, p.refine_status)):
        api = {"api_name": "cancel"} if button is p.edit_cancel else PRIVATE
        button.click(on_cancel, [box], status, cancels=[embed_event, edit_event, refine_event], queue=False, **api)

    # -- 6 · history and export ---------------------------------------------------------------------------
    for button, action, name in ((p.undo_btn, studio.undo, "undo"), (p.redo_btn, studio.redo, "redo"),
                                 (p.reset_btn, studio.reset, "reset")):
        then_editor(button.click(session_action(action), [box, opacity], view_outputs, api_name=name, **LIGHT))

    @user_errors
    def on_history_select(b: SessionBox, opacity_value: float, evt: gr.SelectData):
        session = studio.session(b)
        if evt.index is None:
            return skip_view()
        studio.goto(session, studio.history_start(session) + int(evt.index))
        return show(b, opacity_value)

    then_editor(p.history.select(on_history_select, [box, opacity], view_outputs, **PRIVATE, **LIGHT))

    @user_errors
    def on_export(b: SessionBox):
        return [str(path) for path in studio.export(studio.session(b))]

    p.export_btn.click(on_export, [box], p.export_files, api_name="export", **LIGHT)

    # -- model picker ----------------------------------------------------------------------------------------
    @user_errors
    def on_model(b: SessionBox, bundle_id: str, opacity_value: float):
        session = studio.session(b, bundle_id)
        pipe = studio.pipeline(session)
        view = studio.view(session, opacity_value)
        canvas = editor_component(pipe, studio.editor_factor(pipe), value=view.editor, render=False)
        session.ui_cache["editor"] = view.labels.tobytes() if view.labels is not None else None
        legend = legend_html(pipe)
        return [model_text(pipe), legend, legend, canvas, None, view.image, f"Switched to {pipe.bundle.title}.",
                *gallery_updates(b), *view_updates(view)]

    p.model.change(on_model, [box, p.model, opacity],
                   [p.model_info, p.legend, p.legend_paint, p.editor, *image_outputs, p.gallery, p.export_choice,
                    *view_outputs], api_name="select_model", **HEAVY)
