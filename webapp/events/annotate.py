"""7 · annotate: draw samples or add photos, click regions, paint, save, export/import, train with a progress bar.

Clicks on the picture arrive as ``gr.SelectData`` (pixel coordinates of the shown picture); every
event that changes the label map also sends the painter, so brush strokes are merged first and the
canvas always shows the map the server holds. These events are the page's own (not API endpoints):
gallery and picture clicks cannot be driven by an API client; scripts use ``editgan_core.annotation``.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp.actions.annotate import AnnotateView, TrainOutcome
from webapp.errors import user_errors
from webapp.events.common import HEAVY, LIGHT, PRIVATE, Updates, Wiring, stream_updates
from webapp.session import SessionBox


def wire_annotate(w: Wiring) -> None:
    p, studio = w.page, w.studio
    outputs = [p.ann_progress, p.ann_gallery, p.ann_picture, p.ann_editor, p.ann_status, p.ann_undo]

    def shown(view: AnnotateView) -> Updates:
        updates: Updates = {p.ann_progress: view.progress, p.ann_gallery: view.gallery, p.ann_status: view.status,
                            p.ann_undo: gr.Button(interactive=view.can_undo)}
        if view.picture is not None:
            updates.update({p.ann_picture: view.picture, p.ann_editor: view.editor})
        return updates

    @user_errors
    def on_refresh(box: SessionBox) -> Updates:
        return shown(studio.annotate_view(w.session(box)))

    @user_errors
    def on_draw(box: SessionBox, count: float, seed: float, truncation: float) -> Updates:
        return shown(studio.annotate_draw(w.session(box), int(count or 16), int(seed or 0), truncation))

    @user_errors
    def on_add_photos(box: SessionBox, files: list[str] | None, steps: float,
                      progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's way to ask for a progress bar)
        items = studio.annotate_add_photos(w.session(box), files, int(steps))
        yield from stream_updates(items, progress, "Embedding photos", lambda _: {}, shown)

    @user_errors
    def on_open(box: SessionBox, evt: gr.SelectData) -> Updates:
        caption = (evt.value or {}).get("caption") if isinstance(evt.value, dict) else None
        if not caption:
            return gr.skip()
        return shown(studio.annotate_open(w.session(box), caption.split()[0]))

    @user_errors
    def on_click(box: SessionBox, value: Any, class_name: str, mode: str, evt: gr.SelectData) -> Updates:
        if not isinstance(evt.index, list | tuple) or len(evt.index) != 2:
            return gr.skip()
        x, y = evt.index
        return shown(studio.annotate_click(w.session(box), value, int(x), int(y), class_name, mode))

    @user_errors
    def on_save(box: SessionBox, value: Any) -> Updates:
        return shown(studio.annotate_save(w.session(box), value))

    @user_errors
    def on_undo(box: SessionBox) -> Updates:
        return shown(studio.annotate_undo(w.session(box)))

    @user_errors
    def on_delete(box: SessionBox) -> Updates:
        return shown(studio.annotate_delete(w.session(box)))

    p.ann_refresh.click(on_refresh, [p.box], outputs, **PRIVATE, **LIGHT)
    p.ann_draw.click(on_draw, [p.box, p.ann_count, p.ann_seed, p.ann_truncation], outputs, **PRIVATE, **HEAVY)
    photos = p.ann_add_photos.click(on_add_photos, [p.box, p.ann_photos, p.ann_photo_steps], outputs,
                                    show_progress_on=[p.ann_status], **PRIVATE, **HEAVY)
    p.ann_gallery.select(on_open, [p.box], outputs, **PRIVATE, **LIGHT)
    p.ann_picture.select(on_click, [p.box, p.ann_editor, p.ann_class, p.ann_mode], outputs, **PRIVATE, **LIGHT)
    p.ann_save.click(on_save, [p.box, p.ann_editor], outputs, **PRIVATE, **LIGHT)
    p.ann_undo.click(on_undo, [p.box], outputs, **PRIVATE, **LIGHT)
    p.ann_delete.click(on_delete, [p.box], outputs, **PRIVATE, **LIGHT)
    wire_files(w, shown, outputs)
    train = wire_training(w)
    for button, job in ((p.ann_photo_cancel, photos), (p.ann_train_cancel, train)):
        button.click(lambda box: box.session.cancel() if box.session else None, [p.box], None, cancels=[job],
                     queue=False, **PRIVATE)


def wire_files(w: Wiring, shown, outputs: list) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_export(box: SessionBox) -> str:
        return str(studio.annotate_export(w.session(box)))

    @user_errors
    def on_import(box: SessionBox, path: str | None) -> Updates:
        return shown(studio.annotate_import(w.session(box), path))

    p.ann_export.click(on_export, [p.box], p.ann_export_file, **PRIVATE, **LIGHT)
    p.ann_import.click(on_import, [p.box, p.ann_import_file], outputs, **PRIVATE, **LIGHT)


def wire_training(w: Wiring) -> Any:
    p, studio = w.page, w.studio

    @user_errors
    def on_train(box: SessionBox, progress: gr.Progress = gr.Progress()):  # noqa: B008
        finished = []

        def outcome(item: TrainOutcome) -> Updates:
            finished.append(item)
            return {p.ann_train_status: item.status, p.ann_cv: item.table}

        items = studio.annotate_train(w.session(box))
        yield {p.ann_train_status: "Training…"}
        yield from stream_updates(items, progress, "Training the segmentation branch", lambda _: {}, outcome)
        if not finished:
            yield {p.ann_train_status: "Training stopped (see the message)."}

    return p.ann_train.click(on_train, [p.box], [p.ann_train_status, p.ann_cv], show_progress_on=[p.ann_train_status],
                             **PRIVATE, **HEAVY)
