"""Entry point (also the Hugging Face Space convention): ``python app.py [--bundle PATH] [--port N]``.

``demo`` is built at module level so Spaces (and ``gradio app.py`` reload mode) find it; the model
bundle is the first one in checkpoints/, or the one named by ``--bundle`` / ``EDITGAN_BUNDLE``.
"""

from __future__ import annotations

import argparse
import contextlib
import os

with contextlib.suppress(ImportError):  # ZeroGPU wants `spaces` imported before torch initialises CUDA
    import spaces  # noqa: F401

from webapp.ui import THREADS_ENV, build_demo, bundle_paths, launch_kwargs, set_torch_threads


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="EditGAN studio: semantic image editing in the browser.")
    parser.add_argument("--bundle", default=os.environ.get("EDITGAN_BUNDLE"),
                        help="model bundle folder or name under checkpoints/ (default: the first one found)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch CPU threads (default: ${THREADS_ENV}, else one less than the usable cores)")
    return parser.parse_known_args()[0]  # tolerate extra arguments from hosting wrappers


ARGS = _args()
set_torch_threads(ARGS.threads)
demo = build_demo(bundle_paths(ARGS.bundle), device=ARGS.device)

if __name__ == "__main__":
    demo.launch(server_name=ARGS.host, server_port=ARGS.port, **launch_kwargs())
