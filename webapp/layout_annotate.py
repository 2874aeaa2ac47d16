"""7 · annotate: the components for labelling a set of the model's images and training its segmentation branch.

A section of its own below the editing notebook (``webapp.layout.build_page`` calls ``build_annotate``);
``webapp.events.annotate`` connects it to ``Studio``'s annotate actions.
"""

from __future__ import annotations

import gradio as gr

from editgan_core.annotation.sources import MAX_SAMPLES_AT_ONCE
from editgan_core.pipeline import EditGANPipeline
from webapp.actions.annotate import FILL_MODE, REGION_MODE
from webapp.layout import Page, editor_component, legend_html, steps_slider_range

INTRO = """Make this model editable from about 16 labelled images (EditGAN/DatasetGAN). Draw samples of the
model (their latents are exact) or add photos (embedded first), then paint a **full** label map for each:
click a suggested region (white outlines: the generator's own features grouped) to give it the chosen class,
fill a connected area, correct with the brush (its size goes down to one model pixel; Alt + wheel or the
zoom buttons zoom in). Save each map; the set is kept in the model's folder and can be resumed, exported and
imported. **Train segmentation branch** then learns from the saved maps, installs the result when training
finishes, and tells per class how well it does on images left out, so you know what to label more of."""

CV_HEADERS = ["class", "IoU on left-out images", "labelled pixels", "advice"]


def build_annotate(p: Page, pipe: EditGANPipeline, editor_factor: int) -> None:
    """The section, collapsed until opened."""
    with gr.Accordion("7 · Annotate: make this model editable", open=False, elem_id="annotate"):
        gr.Markdown(INTRO)
        build_set(p, pipe)
        build_painting(p, pipe, editor_factor)
        build_training(p)


def build_set(p: Page, pipe: EditGANPipeline) -> None:
    """Adding images (samples or photos), the set's progress and its pictures."""
    with gr.Row():
        with gr.Column(scale=2):
            with gr.Row():
                p.ann_count = gr.Number(16, precision=0, minimum=1, maximum=MAX_SAMPLES_AT_ONCE, label="Samples")
                p.ann_seed = gr.Number(0, precision=0, minimum=0, label="First seed")
            p.ann_truncation = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Truncation")
            p.ann_draw = gr.Button("Draw samples", elem_id="ann-draw")
            p.ann_photos = gr.File(file_count="multiple", file_types=["image"], label="Photos to add")
            p.ann_photo_steps = gr.Slider(**steps_slider_range(pipe.defaults.embed_steps, 10, 300), step=10,
                                          label="Embedding steps for photos")
            with gr.Row():
                p.ann_add_photos = gr.Button("Add photos")
                p.ann_photo_cancel = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=3):
            p.ann_progress = gr.Markdown("*No annotation set yet.*", elem_id="ann-progress")
            p.ann_gallery = gr.Gallery(label="The set (click an image to open it; ✓ = saved)", columns=8, height=220,
                                       format="png", allow_preview=False, object_fit="contain", fit_columns=False,
                                       elem_id="ann-gallery", elem_classes=["pixelated"])
            p.ann_refresh = gr.Button("↻ Show the set", size="sm", elem_id="ann-refresh")


def build_painting(p: Page, pipe: EditGANPipeline, editor_factor: int) -> None:
    """The picture to click on, the class and click mode, the painter and the save buttons."""
    names = [c.name for c in pipe.bundle.classes]
    with gr.Row():
        with gr.Column(scale=2):
            p.ann_class = gr.Radio(names, value=names[min(1, len(names) - 1)], label="Class for clicks",
                                   elem_id="ann-class")
            p.ann_legend = gr.HTML(legend_html(pipe))
            p.ann_mode = gr.Radio([REGION_MODE, FILL_MODE], value=REGION_MODE, label="A click on the picture will",
                                  elem_id="ann-mode")
            # shown at its own size (model pixels x the painter's factor), never enlarged by CSS: Gradio maps
            # a click to picture pixels assuming the picture is not shown larger than it is
            p.ann_picture = gr.Image(label="Click to name a region", format="png", interactive=False,
                                     elem_classes=["pixelated"], height=300, elem_id="ann-picture")
        with gr.Column(scale=3):
            p.ann_editor = editor_component(pipe, editor_factor, label="Label map (paint with the class colours)",
                                            height=420, elem_id="ann-painter", elem_classes=["pixelated"])
    with gr.Row():
        p.ann_undo = gr.Button("↶ Undo click or fill", interactive=False, elem_id="ann-undo")
        p.ann_save = gr.Button("Save label map", variant="primary", elem_id="ann-save")
        p.ann_delete = gr.Button("Remove this image", variant="stop")
    p.ann_status = gr.Markdown(elem_id="ann-status")


def build_training(p: Page) -> None:
    """Zip export and import; training with its progress, cancel and cross-validation table."""
    with gr.Row():
        with gr.Column():
            p.ann_export = gr.Button("Export the set (zip)")
            p.ann_export_file = gr.File(label="Annotation zip", interactive=False)
        with gr.Column():
            p.ann_import_file = gr.File(label="Import an annotation zip", file_types=[".zip"])
            p.ann_import = gr.Button("Import")
    with gr.Row(equal_height=True):
        p.ann_train = gr.Button("Train segmentation branch", variant="primary", elem_id="ann-train")
        p.ann_train_cancel = gr.Button("Cancel training", variant="stop")
    p.ann_train_status = gr.Markdown(elem_id="ann-train-status")
    p.ann_cv = gr.Dataframe(headers=CV_HEADERS, label="Cross-validation: per class", interactive=False,
                            elem_id="ann-cv")
