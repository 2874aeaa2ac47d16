"""Entry point (also the Hugging Face Space convention): ``python app.py [--bundle B] [--port N]``.

``demo`` is built at module level so Spaces (and ``gradio app.py`` reload mode) find it; the options,
the bundle (``--bundle`` / ``EDITGAN_BUNDLE``, a folder, a name or a Hub repo) and the start-up work are
``webapp.launch``'s, shared with the ``editgan-studio`` command.
"""

from __future__ import annotations

import contextlib

with contextlib.suppress(ImportError):  # ZeroGPU wants `spaces` imported before torch initialises CUDA
    import spaces  # noqa: F401

from webapp.launch import create_demo_or_exit, launch, parse_args

ARGS = parse_args()
demo = create_demo_or_exit(ARGS)

if __name__ == "__main__":
    launch(demo, ARGS)
