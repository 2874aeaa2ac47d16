"""1 · image: sample a face by seed, or embed a photo (streamed)."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from webapp.actions.base import whole_number_in
from webapp.actions.image import MAX_SEED
from webapp.errors import user_errors
from webapp.events.common import HEAVY, LIGHT, PRIVATE, Updates, Wiring, stream_updates
from webapp.events.tuning import tuning_cost
from webapp.layout import FAST
from webapp.layout_fidelity import fidelity_text
from webapp.outcomes import EmbedOutcome, Progress
from webapp.session import SessionBox


def wire_image(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_sample(box: SessionBox, seed: float, truncation: float, opacity: float) -> Updates:
        seed = whole_number_in(seed or 0, "the seed", 0, MAX_SEED)
        step = studio.sample(w.session(box), seed, truncation)
        return {p.source_img: None, p.recon_img: step.image, p.embed_status: f"Sampled seed {seed}.",
                p.fidelity: None, **w.show(box, opacity)}

    def on_lucky() -> int:
        return int(np.random.default_rng().integers(0, 2**31 - 1))

    @user_errors
    def on_embed(box: SessionBox, image: Any, mode: str, steps: float, opacity: float,
                 progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's way to ask for a progress bar)
        def preview(item: Progress) -> Updates:
            return {p.recon_img: item.preview,
                    p.embed_status: f"Embedding: step {item.step}/{item.steps}, loss {item.loss:.4f}"}

        def outcome(item: EmbedOutcome) -> Updates:
            how = "encoder only" if item.steps_done == 0 else f"{item.steps_done} steps"
            return {p.source_img: item.source, p.recon_img: item.step.image,
                    p.embed_status: f"Embedded ({how}): PSNR {item.psnr:.1f} dB.  \n{fidelity_text(item.fidelity)}",
                    p.fidelity: item.fidelity.as_dict() if item.fidelity else None,
                    p.tune_cost: tuning_cost(studio, w.session(box)),
                    **w.show(box, opacity)}

        items = studio.embed(w.session(box), image, 0 if mode == FAST else steps)
        yield from stream_updates(items, progress, "Embedding", preview, outcome)

    outputs = [p.source_img, p.recon_img, p.embed_status, *w.view_outputs, p.fidelity, p.tune_cost]
    sample_inputs = [p.box, p.seed, p.truncation, p.opacity]
    w.then_editor(p.sample_btn.click(on_sample, sample_inputs, outputs, api_name="sample", **LIGHT))
    w.then_editor(p.lucky_btn.click(on_lucky, None, p.seed, queue=False, **PRIVATE).then(
        on_sample, sample_inputs, outputs, **PRIVATE, **LIGHT))
    embed = p.embed_btn.click(on_embed, [p.box, p.upload, p.mode, p.embed_steps, p.opacity], outputs,
                              api_name="embed", show_progress_on=[p.embed_status], **HEAVY)
    w.jobs.append(embed)
    w.then_editor(embed)
