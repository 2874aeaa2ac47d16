"""1 · high fidelity: pivotal tuning of the session's copy of the model (streamed), and its price."""

from __future__ import annotations

import gradio as gr

from editgan_core.pti import TuningSettings
from webapp.controller import Studio
from webapp.errors import user_errors
from webapp.events.common import HEAVY, LIGHT, QUIET, Updates, Wiring, stream_updates
from webapp.layout_fidelity import tuning_cost_text
from webapp.outcomes import Progress, TuneOutcome
from webapp.session import Session, SessionBox

STEPS_KEY = "tune_steps"  # the steps last chosen on the slider, kept in the session's ui_cache


def tuning_cost(studio: Studio, session: Session) -> str:
    steps = int(session.ui_cache.get(STEPS_KEY, TuningSettings.steps))
    return tuning_cost_text(studio.tuning_estimate(session, steps), steps)


def wire_tuning(w: Wiring) -> None:
    p, studio = w.page, w.studio

    @user_errors
    def on_steps(box: SessionBox, steps: float) -> str:
        session = w.session(box)
        session.ui_cache[STEPS_KEY] = int(steps)
        return tuning_cost(studio, session)

    @user_errors
    def on_tune(box: SessionBox, steps: float, opacity: float,
                progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's way to ask for a progress bar)
        def preview(item: Progress) -> Updates:
            return {p.recon_img: item.preview,
                    p.embed_status: f"Pivotal tuning: step {item.step}/{item.steps}, loss {item.loss:.4f}"}

        def outcome(item: TuneOutcome) -> Updates:
            done = "stopped early, " if item.stopped else ""
            text = (f"High fidelity: {done}{item.steps_done} tuning steps in {item.seconds:.1f} s (measured); "
                    f"PSNR {item.psnr_before:.1f} → {item.psnr_after:.1f} dB. Edits now run on this tuned copy.")
            return {p.recon_img: item.step.image, p.embed_status: text,
                    p.tune_cost: tuning_cost(studio, w.session(box)), **w.show(box, opacity)}

        yield from stream_updates(studio.tune(w.session(box), int(steps)), progress, "Pivotal tuning", preview,
                                  outcome)

    p.tune_steps.change(on_steps, [p.box, p.tune_steps], p.tune_cost, **QUIET, **LIGHT)
    tune = p.tune_btn.click(on_tune, [p.box, p.tune_steps, p.opacity],
                            [p.recon_img, p.embed_status, p.tune_cost, *w.view_outputs], api_name="tune",
                            show_progress_on=[p.embed_status], **HEAVY)
    w.jobs.append(tune)
    w.then_editor(tune)
