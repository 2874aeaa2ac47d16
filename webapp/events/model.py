"""The model picker: another bundle starts a fresh session on it, and the page follows its classes, defaults
and components (its card, and what each section can do without an encoder or a segmentation branch)."""

from __future__ import annotations

import gradio as gr

from webapp.errors import user_errors
from webapp.events.common import HEAVY, LIGHT, Updates, Wiring
from webapp.layout import (
    PRECISE,
    Page,
    editor_component,
    legend_html,
    refine_choices,
    section_notices,
    steps_slider_range,
)
from webapp.outcomes import ModelInfo
from webapp.session import SessionBox


def capability_updates(p: Page, info: ModelInfo) -> Updates:
    """The model's line and card, each section's note on what it lacks, and the buttons that need the missing parts."""
    notices = section_notices(info)
    updates: Updates = {
        p.model_info: info.summary, p.model_card: info.card,
        p.model_samples: gr.Image(info.samples, visible=info.samples is not None),
        p.mode: gr.Radio(value=PRECISE, interactive=info.has_encoder),
        **{button: gr.Button(interactive=info.can_segment)
           for button in (p.paint_btn, p.edit_btn, p.save_btn, p.refine_btn)},
    }
    for component, key in ((p.embed_notice, "embed"), (p.seg_notice, "segmentation"), (p.paint_notice, "paint"),
                           (p.edit_notice, "edit"), (p.refine_notice, "refine")):
        updates[component] = gr.Markdown(notices[key], visible=bool(notices[key]))
    return updates


def capability_outputs(p: Page) -> list:
    return [p.model_card, p.model_samples, p.mode, p.paint_btn, p.edit_btn, p.save_btn, p.refine_btn, p.embed_notice,
            p.seg_notice, p.paint_notice, p.edit_notice, p.refine_notice]


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
        return {p.legend: legend, p.legend_paint: legend, p.editor: canvas,
                p.source_img: None, p.recon_img: view.image, p.embed_status: f"Switched to {pipe.bundle.title}.",
                p.embed_steps: gr.Slider(**steps_slider_range(d.embed_steps, 10, 300)),
                p.edit_steps: gr.Slider(**steps_slider_range(d.edit_steps, 5, 200)),
                p.refine_steps: gr.Radio(**refine_choices(d.refine_steps)),
                **capability_updates(p, studio.model_info(pipe)), **w.gallery_updates(box), **w.view_updates(view)}

    p.model.change(on_model, [p.box, p.model, p.opacity],
                   [p.model_info, p.legend, p.legend_paint, p.editor, p.source_img, p.recon_img, p.embed_status,
                    p.gallery, p.vector_choice, p.embed_steps, p.edit_steps, p.refine_steps, *capability_outputs(p),
                    *w.view_outputs],
                   api_name="select_model", **HEAVY)

    @user_errors
    def on_refresh(current: str | None) -> Updates:
        choices = studio.model_choices(refresh=True)
        gr.Info(f"{len(choices)} model(s) available: {', '.join(label for label, _ in choices)}")
        return {p.model: gr.Dropdown(choices=choices, value=current)}

    p.model_refresh.click(on_refresh, [p.model], [p.model], api_name="refresh_models", **LIGHT)
