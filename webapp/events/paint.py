"""3 · paint: check what the painting asks for before learning it."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webapp import labels as lab
from webapp.errors import user_errors
from webapp.events.common import LIGHT, PRIVATE, Updates, Wiring
from webapp.session import SessionBox


def wire_paint(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_paint(box: SessionBox, value: Any) -> Updates:
        session = w.session(box)
        paint = studio.read_paint(session, value)
        notice = studio.paint_notice(session, paint)
        if notice:
            gr.Warning(notice.text)
        palette = studio.pipeline(session).bundle.palette
        picture = lab.outline(lab.colorize(paint.labels, palette), paint.changed, color=(255, 255, 255), dim=0.35)
        info = studio.describe_paint(session, paint)
        if paint.far_pixels:
            info += f" {paint.far_pixels} pixel(s) in no class colour were ignored."
        return {p.target_img: picture, p.paint_info: info}

    p.paint_btn.click(on_paint, [p.box, p.editor], [p.target_img, p.paint_info], api_name="paint", **LIGHT)

    @user_errors
    def on_restore(box: SessionBox) -> Updates:
        """The current segmentation back on the canvas, every stroke gone: the way back from any painting."""
        session = w.session(box)
        view = studio.view(session)
        session.ui_cache["editor"] = view.labels.tobytes() if view.labels is not None else None
        if view.editor is None:  # a model without a segmentation branch has no label map to paint
            return gr.skip()
        return {p.editor: view.editor, p.target_img: None, p.paint_info: "No change painted yet."}

    p.paint_restore.click(on_restore, [p.box], [p.editor, p.target_img, p.paint_info], **PRIVATE, **LIGHT)
