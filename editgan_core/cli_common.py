"""The prologue every ``python -m editgan_core...`` command shares: logging, common options, threads, bundle, domain.

Written once so the commands agree on option names, help texts and defaults, and so a bundle
without a procedural domain is refused the same way, before any long work, everywhere.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from types import ModuleType

import torch

from editgan_core.bundle import Bundle, BundleError
from editgan_core.pipeline import EditGANPipeline

LOG_LEVEL_ENV = "EDITGAN_LOG_LEVEL"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LOGGERS = ("httpx", "httpcore", "urllib3")  # one INFO line per HTTP request drowns the studio's own


def setup_logging(level: str | int | None = None) -> None:
    """Log records and ``warnings`` to stderr at ``level`` (default ``$EDITGAN_LOG_LEVEL``, else INFO).

    Every entry point calls it (``parse_command`` does), so the core's info lines are seen; a process that
    configured logging already keeps its own handlers.
    """
    level = level or os.environ.get(LOG_LEVEL_ENV, "INFO")
    if isinstance(level, str):
        level = logging.getLevelName(level.strip().upper())
        level = level if isinstance(level, int) else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    logging.captureWarnings(True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def add_common_args(parser: argparse.ArgumentParser, *, bundle: bool = False, device: bool = False,
                    device_default: str | None = None, threads_default: int | None = None
                    ) -> argparse.ArgumentParser:
    """``--threads`` always; ``--bundle`` (required) and ``--device`` when asked for."""
    if bundle:
        parser.add_argument("--bundle", required=True, help="bundle folder or name under checkpoints/")
    if device:
        parser.add_argument("--device", default=device_default,
                            help=f"cpu, cuda, cuda:1 ... (default: {device_default or 'cuda when available'})")
    default_threads = threads_default or "torch's"
    parser.add_argument("--threads", type=int, default=threads_default,
                        help=f"torch CPU threads (default: {default_threads})")
    return parser


def command_parser(doc: str | None, **common) -> argparse.ArgumentParser:
    """A parser whose help is the module docstring as written, with ``add_common_args(**common)``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_common_args(parser, **common)


def set_threads(threads: int | None) -> None:
    """Set torch's CPU threads; ``None`` or 0 keeps torch's own choice."""
    if threads:
        torch.set_num_threads(threads)


def parse_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Set up logging, parse ``argv`` and apply ``--threads`` before any model is built."""
    setup_logging()
    args = parser.parse_args(argv)
    set_threads(getattr(args, "threads", None))
    return args


def open_pipeline(args: argparse.Namespace, **kwargs) -> EditGANPipeline:
    """The pipeline of ``--bundle`` on ``--device`` (when the command has one)."""
    return EditGANPipeline.from_pretrained(args.bundle, device=getattr(args, "device", None), **kwargs)


def require_domain(parser: argparse.ArgumentParser, bundle: Bundle, purpose: str) -> ModuleType:
    """The bundle's procedural domain, or a usage error saying what needed it."""
    try:
        return bundle.domain_module()
    except BundleError as exc:
        parser.error(f"{exc}: {purpose}")
