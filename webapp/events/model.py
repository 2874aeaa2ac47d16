"""The model picker: another bundle starts a fresh session on it, and the page follows its classes and defaults."""

from __future__ import annotations

import gradio as gr

from webapp.errors import user_errors
from webapp.events.common import HEAVY, Updates, Wiring
from webapp.layout import editor_component, legend_html, model_text, refine_choices, steps_slider_range
from webapp.session import SessionBox


def wire_model(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_model(box: SessionBox, bundle_id: str, opacity: float) -> Updates:
        session = studio.session(box, bundle_id)
        pipe = studio.pipeline(session)
        view = studio.view(session, opacity)
        canvas = editor_component(pipe, studio.editor_factor(pipe), value=view.editor, render=False)
        session.ui_cache["editor"] = view.labels.tobytes() if view.labels is not None else None
        legend, d = legend_html(pipe), pipe.defaults
        return {p.model_info: model_text(pipe), p.legend: legend, p.legend_paint: legend, p.editor: canvas,
                p.source_img: None, p.recon_img: view.image, p.embed_status: f"Switched to {pipe.bundle.title}.",
                p.embed_steps: gr.Slider(**steps_slider_range(d.embed_steps, 10, 300)),
                p.edit_steps: gr.Slider(**steps_slider_range(d.edit_steps, 5, 200)),
                p.refine_steps: gr.Radio(**refine_choices(d.refine_steps)),
                **w.gallery_updates(box), **w.view_updates(view)}

    p.model.change(on_model, [p.box, p.model, p.opacity],
                   [p.model_info, p.legend, p.legend_paint, p.editor, p.source_img, p.recon_img, p.embed_status,
                    p.gallery, p.export_choice, p.embed_steps, p.edit_steps, p.refine_steps, *w.view_outputs],
                   api_name="select_model", **HEAVY)
