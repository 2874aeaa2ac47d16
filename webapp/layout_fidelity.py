"""Section 1's fidelity block: the report after an embedding and the "High fidelity (pivotal tuning)" option.

Only layout; ``webapp.events.tuning`` connects it and ``webapp.actions.tuning`` does the work.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from editgan_core.fidelity import FidelityReport
from editgan_core.pti import MAX_STEPS, TuningSettings


def tuning_cost_text(estimate_s: float | None, steps: int) -> str:
    """What the option is expected to cost, before it is chosen."""
    if estimate_s is None:
        return f"*Estimated cost: shown after an embedding ({steps} steps).*"
    return f"*Estimated cost: about {estimate_s:.0f} s for {steps} steps on this server.*"


def fidelity_text(report: FidelityReport | None) -> str:
    """The report in words, under the reconstruction: figures, then the verdict (bold when out of domain)."""
    if report is None:
        return ""
    verdict = f"**{report.verdict}**" if report.out_of_domain else report.verdict
    return f"{report.summary()}.  \n{verdict}"


def build_fidelity(p: SimpleNamespace) -> None:
    """The embedding's fidelity report (also returned by the ``embed`` API) and the pivotal-tuning controls."""
    with gr.Accordion("Fidelity report (figures)", open=False):
        p.fidelity = gr.JSON(label="Fidelity report", elem_id="fidelity-json")
    with gr.Accordion("High fidelity (pivotal tuning)", open=False, elem_id="hifi"):
        gr.Markdown("Fine-tunes this session's own copy of the model so that it draws the embedded photo closely; "
                    "edits and vectors then run on that copy. It lasts until a new image or another model.")
        p.tune_steps = gr.Slider(10, MAX_STEPS, value=TuningSettings.steps, step=10, label="Tuning steps")
        p.tune_cost = gr.Markdown(tuning_cost_text(None, TuningSettings.steps), elem_id="tune-cost")
        with gr.Row():
            p.tune_btn = gr.Button("High fidelity (pivotal tuning)", elem_id="tune-btn")
            p.tune_cancel = gr.Button("Cancel", variant="stop", size="md")
