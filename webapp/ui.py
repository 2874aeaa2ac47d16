"""Builds the studio: a model registry, the page (``webapp.layout``) and its events (``webapp.events``).

``build_demo`` is what ``app.py`` (and the tests) call; the registry it creates loads each bundle
once and is owned by that app, never a module-level global.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from editgan_core.bundle import BundleError, list_bundles, resolve_bundle_path
from webapp.allocator import keep_memory_returned
from webapp.controller import Studio
from webapp.events import wire
from webapp.layout import CSS, PAGE_JS, build_page, no_model_page
from webapp.limits import StudioBlocks
from webapp.registry import ModelRegistry

QUEUE_SIZE = 32
THREADS_ENV = "EDITGAN_THREADS"
# Gradio's queue rebuilds a pandas summary of every past event after each event (tens of ms, growing with the
# history) unless told to do it every N events; nothing here reads it, so once in a while is plenty.
ANALYTICS_EVERY = ("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_torch_threads(requested: int | None = None) -> int:
    """Give torch ``requested`` threads (``--threads``), else ``EDITGAN_THREADS``, else one less than the
    usable cores; returns the number set.

    The web server, image encoding and the browser need a core of their own: torch's intra-op threads
    wait for each other at every operation, so one of them losing its core to another process stalls
    all of them, which costs far more than the thread gains (``python -m webapp.bench_overhead --threads N
    --busy 1`` measures it).
    """
    threads = requested or int(os.environ.get(THREADS_ENV) or 0) or max(1, usable_cores() - 1)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def bundle_paths(preferred: str | Path | None = None) -> list[Path]:
    """The bundle to start with (``--bundle`` / ``EDITGAN_BUNDLE``) first, then every bundle in checkpoints/.

    A preferred bundle that cannot be found stays in the list, so the page can say what is wrong with it.
    """
    paths: list[Path] = []
    if preferred:
        try:
            paths.append(resolve_bundle_path(preferred))
        except BundleError:
            paths.append(Path(preferred))
    paths += [p for p in list_bundles() if all(p.resolve() != q.resolve() for q in paths)]
    return paths


def build_demo(bundles: Sequence[str | Path] | None = None, device: str | None = None,
               scan: Callable[[], Iterable[Path]] | None = None) -> gr.Blocks:
    """The whole app on ``bundles`` (default: ``bundle_paths()``); the first one is shown first.

    ``scan`` lists bundle folders again when the model picker is refreshed (default: the checkpoint
    folders, ``list_bundles``, when ``bundles`` is not given; none otherwise).
    """
    if bundles is None:
        bundles, scan = bundle_paths(os.environ.get("EDITGAN_BUNDLE")), scan or list_bundles
    keep_memory_returned()  # a long-running server's size should follow what it holds (``webapp.allocator``)
    registry = ModelRegistry(bundles, device=device, scan=scan)
    if not registry.ids:
        with StudioBlocks(title="EditGAN studio") as demo:
            no_model_page(registry.problems)
        return demo
    studio = Studio(registry)
    pipe = registry.get(registry.default_id)  # load the default model now: the first click should be quick
    init, gallery_items, vector_names = studio.initial_page()  # every new session starts here
    with StudioBlocks(title="EditGAN studio") as demo:
        page = build_page(pipe, registry.choices(), studio.editor_factor(pipe), init, gallery_items, vector_names,
                          studio.model_info(pipe))
        wire(page, studio, init)
    os.environ.setdefault(*ANALYTICS_EVERY)  # read when the queue is made
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    demo.studio = studio  # for tests and tools that want the objects behind the page
    return demo


def launch_kwargs() -> dict[str, Any]:
    """Settings every launch should use (the app, the tests); the request limits are the Blocks' own
    (``webapp.limits.StudioBlocks``), so launchers that do not pass these still get them."""
    return {"css": CSS, "js": PAGE_JS, "theme": gr.themes.Soft()}
