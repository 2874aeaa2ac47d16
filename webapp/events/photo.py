"""1 · image, alignment: load the upload for marking, take clicks as marks, align from typed marks (the API)."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from editgan_core.photos.framing import LANDMARKS
from editgan_core.pipeline import InputError
from webapp.actions.photo import PhotoView
from webapp.errors import user_errors
from webapp.events.common import LIGHT, PRIVATE, QUIET, Updates, Wiring
from webapp.photo_state import POINTS
from webapp.session import SessionBox


def marks_json(w: Wiring, box: SessionBox) -> str:
    """The session's marks in photo pixels, as the numbers box shows them."""
    state = w.session(box).photo
    if state.aligned is None:
        return ""
    rounded = [[round(x, 1), round(y, 1)] for x, y in state.marks]
    marks = dict(zip(LANDMARKS, rounded, strict=True)) if state.mode == POINTS else {"box": rounded[0] + rounded[1]}
    return json.dumps(marks)


def wire_photo(w: Wiring) -> None:
    p, studio = w.page, w.studio
    outputs = [p.mark_img, p.mark_status, p.mark_crop, p.marks_text]

    def show(box: SessionBox, view: PhotoView) -> Updates:
        return {p.mark_img: view.preview, p.mark_status: view.status, p.mark_crop: view.crop,
                p.marks_text: marks_json(w, box)}

    @user_errors
    def on_upload(box: SessionBox, image: Any) -> Updates:
        return show(box, studio.load_photo(w.session(box), image))

    @user_errors
    def on_click(box: SessionBox, evt: gr.SelectData) -> Updates:
        if not isinstance(evt.index, list | tuple) or len(evt.index) != 2:
            return gr.skip()
        return show(box, studio.mark(w.session(box), *evt.index))

    @user_errors
    def on_mode(box: SessionBox, mode: str) -> Updates:
        return show(box, studio.set_mark_mode(w.session(box), mode))

    @user_errors
    def on_clear(box: SessionBox) -> Updates:
        return show(box, studio.clear_marks(w.session(box)))

    @user_errors
    def on_typed(box: SessionBox, image: Any, text: str) -> Updates:
        if image is None:
            raise InputError("upload a photo first")
        try:
            marks = json.loads(text or "")
        except json.JSONDecodeError as exc:
            raise InputError(f"the marks are not JSON: {exc}") from None
        return show(box, studio.set_marks(w.session(box), image, marks))

    p.upload.change(on_upload, [p.box, p.upload], outputs, **PRIVATE, **LIGHT)
    p.mark_img.select(on_click, [p.box], outputs, **QUIET, **LIGHT)
    p.mark_mode.input(on_mode, [p.box, p.mark_mode], outputs, **PRIVATE, **LIGHT)
    p.mark_clear.click(on_clear, [p.box], outputs, **PRIVATE, **LIGHT)
    p.marks_apply.click(on_typed, [p.box, p.upload, p.marks_text], outputs, api_name="align_photo", **LIGHT)
