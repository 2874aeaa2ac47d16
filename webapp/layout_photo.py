"""1 · image, the alignment panel: click the eyes and mouth (or a box) on the uploaded photo."""

from __future__ import annotations

import gradio as gr

from editgan_core.pipeline import EditGANPipeline
from webapp.layout import PIXELS, Page
from webapp.photo_state import BOX, POINTS


def build_photo_marking(p: Page, pipe: EditGANPipeline) -> None:
    """The photo as uploaded (clickable), the marking mode, the marks as numbers, and the aligned crop."""
    framing = pipe.bundle.framing
    modes = [POINTS, BOX] if framing.uses_landmarks else [BOX]
    how = ("mark the eyes and the mouth" if framing.uses_landmarks else "drag no box: click two opposite corners")
    with gr.Accordion("Align the photo to the model's framing", open=True, elem_id="align-panel"):
        gr.Markdown(f"The model draws its pictures framed one way; {how} on your photo so that it is cropped and "
                    "turned the same way. *Embed photo* then uses that crop, and *Export* (section 6) pastes the "
                    "edit back into the full-size photo.")
        with gr.Row():
            p.mark_img = gr.Image(label="Your photo (click to mark)", format="jpeg", interactive=False, height=420,
                                  elem_id="mark-photo", scale=3)
            with gr.Column(scale=2):
                p.mark_mode = gr.Radio(modes, value=modes[0], label="Mark", elem_id="mark-mode")
                p.mark_status = gr.Markdown("Upload a photo to align it to the model's framing.",
                                            elem_id="mark-status")
                p.mark_crop = gr.Image(label="Aligned crop", format="png", interactive=False, height=160,
                                       elem_classes=PIXELS, elem_id="mark-crop")
                with gr.Accordion("Marks as numbers (photo pixels)", open=False):
                    p.marks_text = gr.Textbox(label="Marks", lines=2, elem_id="marks-text",
                                              placeholder='{"left_eye": [x, y], "right_eye": [x, y], "mouth": [x, y]}'
                                                          ' or {"box": [x0, y0, x1, y1]}')
                    p.marks_apply = gr.Button("Align with these marks", size="sm")
                p.mark_clear = gr.Button("Clear marks", size="sm")
