"""The page's components, laid out top to bottom like a notebook: 1 image … 6 history & export.

One builder per section; only layout lives here, and ``webapp.events`` connects the components to
``Studio``. Step counts start at the model's defaults (``EditGANPipeline.defaults``). Small models'
pictures are enlarged by CSS with crisp pixels rather than resized on the server, so the API still
returns them at the model's resolution.
"""

from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import numpy as np

from editgan_core.pipeline import EditGANPipeline
from webapp.actions.vectors import MAX_ACTIVE
from webapp.components import checked_editor, checked_photo
from webapp.controller import INITIAL_SEED
from webapp.layout_fidelity import build_fidelity
from webapp.layout_presets import build_presets
from webapp.outcomes import ModelInfo, View
from webapp.session import SessionBox, close_box

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
FAST, PRECISE = "fast (encoder only)", "precise (encoder + optimisation)"
PIXELS = ["pixelated", "fill"]  # small model pictures: enlarged to the box, without blur
PICTURE_MIN = 200  # px: pictures side by side wrap onto rows of their own below this width (narrow screens)

CSS = """
.pixelated img, .pixelated canvas { image-rendering: pixelated; }
.fill img { width: 100% !important; height: 100% !important; object-fit: contain; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 0.9em; }
.legend span.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #8886;
                      border-radius: 3px; vertical-align: -2px; margin-right: 5px; }
/* labels sit above the pictures, never on them, and stop short of the picture's buttons */
.pixelated > label[data-testid="block-label"] { max-width: calc(100% - 100px); overflow: hidden;
                                                 text-overflow: ellipsis; white-space: nowrap; }
#painter > label[data-testid="block-label"] { max-width: calc(100% - 200px); }
.pixelated .image-container { padding-top: 40px; box-sizing: border-box; }
.pixelated .grid-container { margin-top: 32px; }
/* the brush palette: every colour outlined (white shows on white) and named (PAGE_JS copies the legend's names) */
#painter menu.swatch { display: grid !important; grid-template-columns: repeat(2, max-content) !important;
                       gap: 6px 8px; width: max-content; }
#painter .wrap:has(menu.swatch), #painter .swatch-wrap, #painter .swatch-container { width: max-content !important;
                                                                                   max-width: none !important; }
#painter menu.swatch button.color { position: relative; margin-right: 110px !important;
                                    box-shadow: 0 0 0 1px #000a, inset 0 0 0 1px #fff8; }
#painter menu.swatch button.color::after { content: attr(data-name); position: absolute; left: calc(100% + 6px);
                                           top: 50%; transform: translateY(-50%); white-space: nowrap;
                                           font-size: 12px; color: var(--body-text-color); }
/* the canvas' "clear" would wipe the label map with no way back: "Restore the segmentation" replaces it */
#painter button[aria-label="Clear canvas"] { display: none; }
"""

# Runs once in the page: names the brush palette's colours after the legend beside the painter (the palette
# itself takes colours only), for hover, screen readers and the CSS captions; follows a model switch.
PAGE_JS = """
() => {
  const name = () => {
    const names = {};
    for (const item of document.querySelectorAll('#paint-legend .legend > span')) {
      const swatch = item.querySelector('.swatch');
      if (swatch) names[getComputedStyle(swatch).backgroundColor] = item.textContent.trim();
    }
    for (const button of document.querySelectorAll('#painter menu.swatch button.color')) {
      const label = names[button.style.backgroundColor];
      if (label && button.dataset.name !== label) {
        button.dataset.name = label;
        button.title = label;
        button.setAttribute('aria-label', label);
      }
    }
  };
  new MutationObserver(name).observe(document.body, {childList: true, subtree: true});
}
"""
BRUSH_MODEL_PIXELS = 0.75  # the brush's radius: 1.5 model pixels across, a precise stroke at any model size
ERASER_MODEL_PIXELS = 1.5

INTRO = """# EditGAN studio
High-precision semantic image editing ([EditGAN](https://nv-tlabs.github.io/editGAN/), Ling et al. 2021):
put a face into the generator, **paint its part segmentation**, and let the app learn an **editing
vector** that makes the picture follow your painting. Vectors are kept, combined and reused on other
faces instantly. Work through the steps from top to bottom."""


class Page(SimpleNamespace):
    """The components of one page, by name (``page.editor``, ``page.sliders[0]``, ...)."""


def legend_html(pipe: EditGANPipeline) -> str:
    """Class names next to their colour swatches (the brush palette shows colours only)."""
    items = "".join(f'<span><span class="swatch" style="background:{c.hex}"></span>{html.escape(c.name)}</span>'
                    for c in pipe.bundle.classes)
    return f'<div class="legend">{items}</div>'


def section_notices(info: ModelInfo) -> dict[str, str]:
    """What each section says about a component the model lacks ("" where nothing is missing)."""
    encoder, segmenter = info.notes.get("encoder"), info.notes.get("segmenter")
    see = ("*This needs the segmentation branch the model does not have yet; section 2 · Segmentation says how "
           "to add one.*") if segmenter else ""
    return {"embed": f"*{encoder}*" if encoder else "",
            "segmentation": f"**No segmentation branch yet.** {segmenter}" if segmenter else "",
            "paint": see, "edit": see, "refine": see}


def editor_component(pipe: EditGANPipeline, factor: int, **kwargs: Any) -> gr.ImageEditor:
    """The label painter: a fixed palette of exactly the class colours, PNG so colours survive the trip.

    Sizes are radii in canvas pixels (``factor`` of them per model pixel): the brush paints about 1.5 model
    pixels across, the eraser 3, and large models a little more (1/80 of the side), so one can still see it.
    """
    side = pipe.resolution * factor
    colors = [c.hex for c in pipe.bundle.classes]
    return checked_editor(gr.ImageEditor(
        type="numpy", image_mode="RGBA", sources=(), transforms=(), format="png",
        brush=gr.Brush(colors=colors, default_color=colors[min(1, len(colors) - 1)], color_mode="fixed",
                       default_size=max(1, round(BRUSH_MODEL_PIXELS * factor), side // 160)),
        eraser=gr.Eraser(default_size=max(2, round(ERASER_MODEL_PIXELS * factor), side // 80)),
        layers=gr.LayerOptions(allow_additional_layers=False, layers=["edits"]),
        canvas_size=(side, side), fixed_canvas=True, **kwargs))


def steps_slider_range(default: int, low: int, high: int) -> dict[str, int]:
    """A steps slider's bounds and value: the model's default, with the bounds widened to include it."""
    return {"minimum": min(low, default), "maximum": max(high, default), "value": default}


def refine_choices(default: int) -> dict[str, Any]:
    return {"choices": sorted({0, 10, 30, default}), "value": default}


def build_page(pipe: EditGANPipeline, choices: list[tuple[str, str]], editor_factor: int, init: View,
               gallery_items: list[tuple[np.ndarray, str]], vector_names: list[str], info: ModelInfo) -> Page:
    """Create every component inside the current ``gr.Blocks``; ``init`` is what a new session shows."""
    p = Page()
    p.box = gr.State(SessionBox, delete_callback=close_box)
    gr.Markdown(INTRO)
    build_model(p, pipe, choices, info)
    notices = section_notices(info)
    build_image(p, pipe, init, info, notices)
    from webapp.layout_photo import build_photo_marking  # its own module, which uses this one's names

    build_photo_marking(p, pipe)
    build_segmentation(p, pipe, init, notices)
    build_paint(p, pipe, editor_factor, init, info, notices)
    build_edit(p, pipe, info, notices)
    build_vectors(p, pipe, init, gallery_items, vector_names, info, notices)
    build_history(p, init)
    from webapp.layout_annotate import build_annotate  # imports this module: imported here, not at the top

    build_annotate(p, pipe, editor_factor)
    return p


def build_model(p: Page, pipe: EditGANPipeline, choices: list[tuple[str, str]], info: ModelInfo) -> None:
    """The model picker (with a rescan for bundles created since the start), one line about the model, its card."""
    with gr.Row(equal_height=True):
        p.model = gr.Dropdown(choices, value=pipe.bundle.id, label="Model", scale=3, elem_id="model")
        p.model_refresh = gr.Button("↻ Look for new models", size="sm", scale=1, min_width=120)
        p.model_info = gr.Markdown(info.summary, elem_id="model-info")
    with gr.Accordion("About this model", open=False, elem_id="model-card"):
        p.model_samples = gr.Image(info.samples, show_label=False, format="png", interactive=False,
                                   visible=info.samples is not None, height=200)
        p.model_card = gr.Markdown(info.card, elem_id="model-card-text")


def notice(text: str, elem_id: str) -> gr.Markdown:
    """A note on what the model lacks, shown only when there is one."""
    return gr.Markdown(text, visible=bool(text), elem_id=elem_id)


def build_image(p: Page, pipe: EditGANPipeline, init: View, info: ModelInfo, notices: dict[str, str]) -> None:
    """1 · image: upload or example, or a sampled face; the input and its reconstruction."""
    examples = sorted(str(path) for path in EXAMPLES_DIR.glob("*.png"))
    gr.Markdown("## 1 · Image\nUpload a photo, pick an example, or sample a random face of the model.")
    with gr.Row():
        with gr.Column(scale=3):
            # image_mode=None hands over the file as uploaded, EXIF orientation included, for prepare_image
            p.upload = checked_photo(gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                              label="Photo (PNG, JPEG, WebP)", height=220, elem_id="upload"))
            if examples:
                gr.Examples(examples, inputs=[p.upload], label="Examples", examples_per_page=8)
            p.mode = gr.Radio([FAST, PRECISE], value=PRECISE, label="Embedding", interactive=info.has_encoder)
            p.embed_steps = gr.Slider(**steps_slider_range(pipe.defaults.embed_steps, 10, 300), step=10,
                                      label="Optimisation steps (precise)")
            with gr.Row():
                p.embed_btn = gr.Button("Embed photo", variant="primary", elem_id="embed-btn")
                p.embed_cancel = gr.Button("Cancel", variant="stop", size="md")
            p.embed_notice = notice(notices["embed"], "embed-notice")
            build_fidelity(p)
        with gr.Column(scale=2):
            p.seed = gr.Number(value=INITIAL_SEED, precision=0, minimum=0, label="Seed")
            p.truncation = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Truncation (lower = more typical)")
            with gr.Row():
                p.sample_btn = gr.Button("Sample face", elem_id="sample-btn")
                p.lucky_btn = gr.Button("Random seed")
        with gr.Column(scale=3):
            with gr.Row():
                p.source_img = gr.Image(label="Input as the model sees it", format="png", interactive=False,
                                        elem_classes=PIXELS, height=220, min_width=PICTURE_MIN)
                p.recon_img = gr.Image(init.image, label="In the model", format="png", interactive=False,
                                       elem_classes=PIXELS, height=220, elem_id="recon", min_width=PICTURE_MIN)
            p.embed_status = gr.Markdown(f"A random face of the model (seed {INITIAL_SEED}).", elem_id="embed-status")


def build_segmentation(p: Page, pipe: EditGANPipeline, init: View, notices: dict[str, str]) -> None:
    """2 · segmentation: the picture, its label map and an overlay of the two."""
    gr.Markdown("## 2 · Segmentation\nThe generator's own part segmentation of the current picture.")
    p.seg_notice = notice(notices["segmentation"], "segmentation-notice")
    with gr.Row():
        p.seg_image = gr.Image(init.image, label="Current picture", format="png", interactive=False,
                               elem_classes=PIXELS, height=240, elem_id="current", min_width=PICTURE_MIN)
        p.seg_labels = gr.Image(init.label_picture, label="Label map", format="png", interactive=False,
                                elem_classes=PIXELS, height=240, min_width=PICTURE_MIN)
        p.seg_overlay = gr.Image(init.overlay, label="Overlay", format="png", interactive=False,
                                 elem_classes=PIXELS, height=240, min_width=PICTURE_MIN)
    with gr.Row(equal_height=True):
        p.opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity", scale=1)
        p.legend = gr.HTML(legend_html(pipe))


def build_paint(p: Page, pipe: EditGANPipeline, editor_factor: int, init: View, info: ModelInfo,
                notices: dict[str, str]) -> None:
    """3 · paint: the label map in a painter whose brush offers the class colours."""
    gr.Markdown("## 3 · Paint\nPaint the parts as they should be. The brush colours are the classes "
                "(legend on the right); the eraser removes strokes, the arrows undo them, and *Restore the "
                "segmentation* starts the painting afresh.")
    p.paint_notice = notice(notices["paint"], "paint-notice")
    with gr.Row():
        p.editor = editor_component(pipe, editor_factor, value=init.editor, label="Label map to paint", height=420,
                                    elem_id="painter", elem_classes=["pixelated"], scale=3)
        with gr.Column(scale=2):
            p.legend_paint = gr.HTML(legend_html(pipe), elem_id="paint-legend")
            with gr.Row():
                p.paint_btn = gr.Button("Check painting", interactive=info.can_segment)
                p.paint_restore = gr.Button("Restore the segmentation", elem_id="paint-restore")
            p.target_img = gr.Image(label="Painted target (changed pixels bright)", format="png", interactive=False,
                                    elem_classes=PIXELS, height=220)
            p.paint_info = gr.Markdown("No change painted yet.", elem_id="paint-info")


def build_edit(p: Page, pipe: EditGANPipeline, info: ModelInfo, notices: dict[str, str]) -> None:
    """4 · edit: learn the vector, show before/after, its region and figures; save it by name."""
    gr.Markdown("## 4 · Edit\nLearn the editing vector that realises the painting, keeping the rest of the "
                "picture as it is.")
    p.edit_notice = notice(notices["edit"], "edit-notice")
    with gr.Row(equal_height=True):
        p.edit_steps = gr.Slider(**steps_slider_range(pipe.defaults.edit_steps, 5, 200), step=5,
                                 label="Optimisation steps", scale=3, elem_id="edit-steps")
        p.edit_btn = gr.Button("Learn edit", variant="primary", elem_id="edit-btn", scale=1,
                               interactive=info.can_segment)
        p.edit_cancel = gr.Button("Cancel", variant="stop", scale=1)
    p.edit_status = gr.Markdown(elem_id="edit-status")
    with gr.Row():
        p.compare = gr.ImageSlider(label="Before / after", format="png", type="numpy", elem_id="compare",
                                   elem_classes=PIXELS, max_height=320)
        p.region_img = gr.Image(label="Edit region (outside dimmed)", format="png", interactive=False,
                                elem_classes=PIXELS, height=320, elem_id="region")
        p.figures = gr.JSON(label="Edit figures", elem_id="figures")
    with gr.Row(equal_height=True):
        p.vec_name = gr.Textbox(label="Vector name", placeholder="e.g. wide smile", scale=2)
        p.vec_desc = gr.Textbox(label="Description", placeholder="what it does, how strong", scale=3)
        p.save_btn = gr.Button("Save as vector", scale=1, interactive=info.can_segment)
    p.save_status = gr.Markdown()
    build_presets(p, pipe, info)


def build_vectors(p: Page, pipe: EditGANPipeline, init: View, gallery_items: list[tuple[np.ndarray, str]],
                  vector_names: list[str], info: ModelInfo, notices: dict[str, str]) -> None:
    """5 · vectors: the gallery, a strength slider per active vector, refinement, vector files."""
    gr.Markdown("## 5 · Vector gallery\nEach picture shows a vector applied to the average face. Click one to "
                f"add it (up to {MAX_ACTIVE} at once) and set its strength; refine adapts them to this picture.")
    p.gallery = gr.Gallery(gallery_items, label="Vectors (click to add)", columns=8, height=230, format="png",
                           allow_preview=False, object_fit="contain", fit_columns=False, elem_id="vector-gallery",
                           elem_classes=["pixelated"])
    with gr.Row():
        with gr.Column(scale=3):
            p.sliders, p.removes = [], []
            for i in range(MAX_ACTIVE):
                with gr.Row(equal_height=True):
                    p.sliders.append(gr.Slider(-3, 3, value=1, step=0.05, label=f"vector {i + 1}", visible=False,
                                               scale=5, elem_id=f"strength-{i}", buttons=[]))
                    p.removes.append(gr.Button("Remove", visible=False, size="sm", scale=1, min_width=80,
                                               elem_id=f"remove-{i}"))
            p.no_active = gr.Markdown("*No active vectors — click one in the gallery.*")
            with gr.Row(equal_height=True):
                p.refine_steps = gr.Radio(**refine_choices(pipe.defaults.refine_steps), label="Refinement steps",
                                          scale=2)
                # off by default: after the correction, refinement steps lowered success on the tuning faces
                p.refine_keep_parts = gr.Checkbox(False, label="Keep the other parts' colour and size (0 steps: "
                                                  "only that)", scale=2, elem_id="refine-keep-parts")
                p.refine_btn = gr.Button("Refine", scale=1, interactive=info.can_segment)
                p.refine_cancel = gr.Button("Cancel", variant="stop", scale=1)
            p.refine_status = gr.Markdown()
            p.refine_notice = notice(notices["refine"], "refine-notice")
        p.vec_image = gr.Image(init.image, label="Current picture", format="png", interactive=False,
                               elem_classes=PIXELS, height=260, scale=2, elem_id="vector-result")
    build_vector_library(p, vector_names)
    # API-only: compose vectors by name (gallery clicks cannot be driven by a client)
    p.api_names = gr.Textbox(visible=False, label="names")
    p.api_scales = gr.Textbox(visible=False, label="scales")
    p.api_apply = gr.Button(visible=False)
    p.api_import = gr.Button(visible=False)  # API-only: import a vector file (the page imports on upload)


def build_vector_library(p: Page, vector_names: list[str]) -> None:
    """Your vectors: rename, delete (after a confirmation), import and export; presets are read-only."""
    with gr.Accordion("Your vectors: rename, delete, import, export", open=False, elem_id="vector-library"):
        with gr.Row(equal_height=True):
            # custom values: an API client may name a vector saved by another session since this one began
            p.vector_choice = gr.Dropdown(vector_names, value=None, label="Vector", allow_custom_value=True, scale=2,
                                          elem_id="vector-choice")
            p.rename_to = gr.Textbox(label="New name", placeholder="e.g. wide smile", scale=2)
            p.rename_btn = gr.Button("Rename", scale=1, interactive=False, elem_id="rename-btn")
            p.delete_btn = gr.Button("Delete…", variant="stop", scale=1, interactive=False, elem_id="delete-btn")
        p.choice_hint = gr.Markdown(elem_id="vector-choice-hint")  # e.g. that a preset is read-only
        with gr.Row(visible=False, equal_height=True) as p.delete_confirm:
            p.delete_question = gr.Markdown()
            p.delete_yes = gr.Button("Yes, delete it", variant="stop", elem_id="delete-yes")
            p.delete_no = gr.Button("Keep it")
        p.library_status = gr.Markdown(elem_id="library-status")
        with gr.Row():
            p.import_file = gr.File(label="Import (.safetensors of this app, .npy of official EditGAN)",
                                    file_types=[".safetensors", ".npy"])
            with gr.Column():
                p.export_vec_btn = gr.Button("Export the vector chosen above")
                p.export_vec_file = gr.File(label="Vector file", interactive=False)
        p.import_status = gr.Markdown()


def build_history(p: Page, init: View) -> None:
    """6 · history and export: the steps as pictures, undo/redo/reset, the downloads."""
    gr.Markdown("## 6 · History & export")
    p.history = gr.Gallery(init.history, label="History (click a step to go back to it)", columns=12, height=170,
                           format="png", allow_preview=False, object_fit="contain", fit_columns=False,
                           elem_classes=["pixelated"])
    p.history_text = gr.Markdown(init.history_text, elem_id="history-text")
    with gr.Row():
        p.undo_btn = gr.Button("↶ Undo", interactive=False, elem_id="undo-btn")
        p.redo_btn = gr.Button("↷ Redo", interactive=False)
        p.reset_btn = gr.Button("Reset to original")
        p.export_btn = gr.Button("Export", variant="primary")
    p.export_files = gr.File(label="Downloads: picture, label map, latent, vector; for an aligned photo also the "
                             "full-size edited photo, the aligned crop and a before/after", file_count="multiple",
                             interactive=False)


def no_model_page(problems: list[str]) -> None:
    """What the page says when no bundle can be used."""
    listed = "".join(f"\n- {html.escape(p, quote=False)}" for p in problems)
    gr.Markdown(INTRO)
    gr.Markdown(
        "### No model bundle found\nThe studio needs a model bundle: a folder with `manifest.json` in "
        "`checkpoints/` (the demo bundle is `checkpoints/faces64`), or one named with `--bundle PATH` or the "
        "`EDITGAN_BUNDLE` environment variable. See the README for how to download or train one."
        + (f"\n\nBundles that could not be read:{listed}" if listed else ""))
