"""The studio's one launcher: ``app.py`` (the Space convention), ``editgan-studio`` and ``python -m webapp``.

Start-up order: logging; the bundle (``--bundle`` / ``EDITGAN_BUNDLE``: a folder, a name in the checkpoint
folders or a Hub repo ``owner/name[@revision]``; without one, every bundle found); the slow things once
(``editgan_core.startup``: CUDA ops, LPIPS weights); then the page. A bundle that cannot be loaded stops
the launcher with the reason, unless ``--fallback-bundle`` / ``EDITGAN_FALLBACK_BUNDLE`` names one to start
on instead. Host and port come from ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (what a Space sets),
else 127.0.0.1:7860.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from editgan_core import startup
from editgan_core.bundle import Bundle, BundleError, list_bundles
from editgan_core.cli_common import setup_logging
from editgan_core.models.checkpoint import CheckpointError
from webapp.ui import THREADS_ENV, build_demo, launch_kwargs, set_torch_threads

log = logging.getLogger(__name__)
TRUE = ("1", "true", "yes", "on")


class StartupError(RuntimeError):
    """The studio cannot start as asked; the message says why."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The launcher's options; unknown ones are ignored, as hosting wrappers add their own."""
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="editgan-studio",
                                     description="EditGAN studio: semantic image editing in the browser.")
    parser.add_argument("--bundle", default=env("EDITGAN_BUNDLE"),
                        help="bundle folder, name in the checkpoint folders, or Hub repo owner/name[@revision] "
                             "(default: $EDITGAN_BUNDLE, else every bundle found)")
    parser.add_argument("--fallback-bundle", default=env("EDITGAN_FALLBACK_BUNDLE"),
                        help="start on this bundle when --bundle cannot be loaded (default: stop with the reason)")
    parser.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch CPU threads (default: ${THREADS_ENV}, else one less than the usable cores)")
    parser.add_argument("--no-download", action="store_true",
                        default=env("EDITGAN_NO_DOWNLOAD", "").strip().lower() in TRUE,
                        help="do not fetch LPIPS weights at start-up ($EDITGAN_NO_DOWNLOAD=1)")
    return parser.parse_known_args(argv)[0]


def _bundles_starting_with(spec: str | None) -> list[Path]:
    """The bundle ``spec`` names first, then every other bundle in the checkpoint folders."""
    others = list_bundles()
    if not spec:
        return others
    first = Bundle.load(spec).root
    return [first, *(p for p in others if p.resolve() != first.resolve())]


def _on_bundle(spec: str | None, args: argparse.Namespace) -> gr.Blocks:
    bundles = _bundles_starting_with(spec)
    startup.prepare(args.device, download=not args.no_download)
    return build_demo(bundles, device=args.device, scan=list_bundles)  # the picker's rescan: new bundles join


def create_demo(args: argparse.Namespace) -> gr.Blocks:
    """The page on ``args.bundle``; ``StartupError`` when it cannot be loaded and no fallback was asked for."""
    setup_logging()
    set_torch_threads(args.threads)
    try:
        return _on_bundle(args.bundle, args)
    except (BundleError, CheckpointError) as exc:
        reason = f"cannot load bundle '{args.bundle or 'from the checkpoint folders'}': {exc}"
        if not args.fallback_bundle:
            raise StartupError(f"{reason} (pass --fallback-bundle to start on another one instead)") from exc
    log.warning("%s; starting on the fallback bundle '%s'", reason, args.fallback_bundle)
    try:
        return _on_bundle(args.fallback_bundle, args)
    except (BundleError, CheckpointError) as exc:
        raise StartupError(f"{reason}; the fallback '{args.fallback_bundle}' cannot be loaded either: {exc}") from exc


def create_demo_or_exit(args: argparse.Namespace) -> gr.Blocks:
    """``create_demo``, ending the process with the reason (exit status 1) instead of a traceback."""
    try:
        return create_demo(args)
    except StartupError as exc:
        raise SystemExit(f"editgan-studio: {exc}") from exc


def launch(demo: gr.Blocks, args: argparse.Namespace, **kwargs) -> None:
    """Serve ``demo`` where ``args`` say (blocks until the server stops, unless kwargs say otherwise)."""
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(), **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """``editgan-studio``: parse, build, serve."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    launch(create_demo_or_exit(args), args)
    return 0
