"""Entry point (also the Hugging Face Space convention): ``python app.py`` serves the studio."""

from __future__ import annotations

import os

from webapp.placeholder import build_demo

demo = build_demo()

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
