"""Temporary landing page until the studio UI lands: says what is coming and shows demo samples."""

from __future__ import annotations

import gradio as gr

COMING = """
# EditGAN studio

High-precision semantic image editing (Ling et al., NeurIPS 2021) on a StyleGAN2: embed a photo,
paint its part segmentation, and learn a reusable **editing vector** that realises the change.

**Status:** the generator, fast ops and demo-domain training are in place; the editing studio
(embedding, label painting, vector gallery, history and export) is being built. This page will be
replaced by the studio when it lands.
"""


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="EditGAN studio") as demo:
        gr.Markdown(COMING)
    return demo
