"""Presets from the user's edits (section 4) and the labelled-samples download (section 7, annotate)."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from webapp.actions.presets import DatasetOutcome, preset_choices
from webapp.errors import user_errors
from webapp.events.common import HEAVY, LIGHT, Updates, Wiring, stream_updates
from webapp.outcomes import Progress
from webapp.session import SessionBox


def preset_dropdown(w: Wiring, box: SessionBox, value: str | None) -> gr.Dropdown:
    return gr.Dropdown(choices=preset_choices(w.studio.pipeline(w.session(box))), value=value)


def wire_presets(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_add(box: SessionBox, name: str, value: Any) -> Updates:
        message = studio.add_to_preset(w.session(box), name, value)
        return {p.preset_status: message, p.preset_name: preset_dropdown(w, box, name.strip())}

    p.preset_add_btn.click(on_add, [p.box, p.preset_name, p.editor], [p.preset_status, p.preset_name],
                           api_name="add_to_preset", **LIGHT)

    @user_errors
    def on_learn(box: SessionBox, name: str, steps: float, keep_parts: bool = True,
                 progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's way to ask for a progress bar)
        def preview(item: Progress) -> Updates:
            return {p.preset_status: f"Learning on the pairs: step {item.step}/{item.steps}, loss {item.loss:.4f}"
                                     + (" (keeping the other parts)" if item.step > int(steps) else "")}

        def outcome(result) -> Updates:
            m = result.vector.extra
            text = (f"Learnt **{html.escape(result.vector.name)}** from {result.used} pairs: region IoU "
                    f"{m['region_iou']:.2f}, change outside the region {100 * m['change_outside']:.1f}%. It is in "
                    "the gallery (section 5) at strength "
                    f"{result.vector.default_scale:g}.")
            return {p.preset_status: text, **w.gallery_updates(box)}

        yield from stream_updates(studio.learn_preset(w.session(box), name, int(steps), bool(keep_parts)), progress,
                                  "Learning the preset", preview, outcome)

    learn = p.preset_learn_btn.click(on_learn, [p.box, p.preset_name, p.edit_steps, p.preset_keep_parts],
                                     [p.preset_status, p.gallery, p.vector_choice], api_name="learn_preset",
                                     show_progress_on=[p.preset_status], **HEAVY)

    @user_errors
    def on_dataset(box: SessionBox, n: float, progress: gr.Progress = gr.Progress()):  # noqa: B008
        def outcome(item: DatasetOutcome) -> Updates:
            r = item.report
            return {p.dataset_file: str(item.zip_path),
                    p.dataset_status: f"{r.written} samples; {r.dropped} draw(s) replaced for ensemble disagreement "
                                      f"above {r.threshold:.3f}."}

        yield from stream_updates(studio.dataset_zip(w.session(box), int(n)), progress, "Drawing labelled samples",
                                  lambda _: {}, outcome)

    dataset = p.dataset_btn.click(on_dataset, [p.box, p.dataset_n], [p.dataset_file, p.dataset_status],
                                  api_name="make_dataset", show_progress_on=[p.dataset_status], **HEAVY)
    w.jobs += [learn, dataset]

    def on_cancel(box: SessionBox) -> str:
        stopped = box.session.cancel() if box.session is not None else False
        return "Cancelled." if stopped else "Nothing was running."

    for button, status in ((p.preset_cancel, p.preset_status), (p.dataset_cancel, p.dataset_status)):
        button.click(on_cancel, [p.box], status, cancels=[learn, dataset], queue=False, api_visibility="private")

    def on_model(bundle_id: str) -> Updates:
        pipe = studio.registry.get(bundle_id)
        can = pipe.segmenter is not None
        return {p.preset_name: gr.Dropdown(choices=preset_choices(pipe), value=None),
                **{b: gr.Button(interactive=can) for b in (p.preset_add_btn, p.preset_learn_btn)}}

    p.model.change(user_errors(on_model), [p.model], [p.preset_name, p.preset_add_btn, p.preset_learn_btn],
                   api_visibility="private", **LIGHT)
