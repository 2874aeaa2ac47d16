"""Gradio studio for EditGAN: layout, callbacks, per-session state. Only calls ``editgan_core``'s facade."""
