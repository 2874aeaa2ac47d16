"""The page's parts for presets learnt from the user's edits (in section 4) and for a labelled dataset
download (in section 7, annotate); ``webapp.events.presets`` connects them."""

from __future__ import annotations

import gradio as gr

from editgan_core.pipeline import EditGANPipeline
from editgan_core.train.preset_pairs import MIN_PAIRS
from webapp.actions.presets import MAX_STUDIO_DATASET, preset_choices
from webapp.outcomes import ModelInfo

PRESET_HELP = (f"Paint the same kind of change on several pictures and add each one to a preset (the painting on the "
               f"canvas, or the edit just learnt). From {MIN_PAIRS} pairs on (8 or more generalise best), learn one "
               "vector that makes the change on any picture; it joins the gallery below at the strength that best "
               "redraws your paintings.")
DATASET_HELP = ("**Labelled samples** (DatasetGAN's use of a segmenter): random pictures of the model with their "
                "predicted label maps (grey class ids and colour previews); draws the segmentation ensemble disagrees "
                "on are replaced. For more samples use `editgan dataset` (README).")


def build_presets(p, pipe: EditGANPipeline, info: ModelInfo) -> None:
    """Add the current edit to a named preset; learn the preset's shared vector from its pairs."""
    with gr.Accordion("Presets from your edits", open=False, elem_id="preset-pairs"):
        gr.Markdown(PRESET_HELP)
        with gr.Row(equal_height=True):
            p.preset_name = gr.Dropdown(preset_choices(pipe), value=None, allow_custom_value=True, scale=2,
                                        label="Preset (pick one or type a new name)", elem_id="preset-name")
            p.preset_add_btn = gr.Button("Add this edit to a preset", scale=1, interactive=info.can_segment,
                                         elem_id="preset-add")
            p.preset_learn_btn = gr.Button("Learn preset from its pairs", scale=1, variant="primary",
                                           interactive=info.can_segment, elem_id="preset-learn")
            p.preset_cancel = gr.Button("Cancel", variant="stop", scale=1)
        p.preset_keep_parts = gr.Checkbox(True, label="Keep the other parts' colour and size (slower: about 100 "
                                                      "more steps per pair)", elem_id="preset-keep-parts")
        p.preset_status = gr.Markdown(elem_id="preset-status")


def build_dataset(p) -> None:
    """A zip of a few labelled samples, made in the studio (a model without a segmenter is told so on click:
    the annotate section may have trained one since the page was built)."""
    gr.Markdown(DATASET_HELP)
    with gr.Row(equal_height=True):
        p.dataset_n = gr.Slider(1, MAX_STUDIO_DATASET, value=16, step=1, label="Samples", scale=2)
        p.dataset_btn = gr.Button("Make labelled samples (zip)", scale=1, elem_id="dataset-btn")
        p.dataset_cancel = gr.Button("Cancel", variant="stop", scale=1)
    p.dataset_status = gr.Markdown(elem_id="dataset-status")
    p.dataset_file = gr.File(label="Labelled samples", interactive=False, elem_id="dataset-file")
