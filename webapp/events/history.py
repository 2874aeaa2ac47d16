"""6 · history and export: undo, redo, reset, jump back by clicking a step, download the current step."""

from __future__ import annotations

import gradio as gr

from webapp.errors import user_errors
from webapp.events.common import LIGHT, PRIVATE, Updates, Wiring
from webapp.session import SessionBox


def wire_history(w: Wiring) -> None:
    p, studio = w.page, w.studio
    for button, action, name in ((p.undo_btn, studio.undo, "undo"), (p.redo_btn, studio.redo, "redo"),
                                 (p.reset_btn, studio.reset, "reset")):
        w.then_editor(button.click(w.session_action(action), [p.box, p.opacity], w.view_outputs, api_name=name,
                                   **LIGHT))

    @user_errors
    def on_history_select(box: SessionBox, opacity: float, evt: gr.SelectData) -> Updates:
        session = w.session(box)
        if evt.index is None:
            return gr.skip()
        studio.goto(session, studio.history_start(session) + int(evt.index))
        return w.show(box, opacity)

    w.then_editor(p.history.select(on_history_select, [p.box, p.opacity], w.view_outputs, **PRIVATE, **LIGHT))

    @user_errors
    def on_export(box: SessionBox) -> list[str]:
        return [str(path) for path in studio.export(w.session(box))]

    p.export_btn.click(on_export, [p.box], p.export_files, api_name="export", **LIGHT)
