"""The studio's GPU work as functions of plain data: what runs under ``gpu`` (``spaces.GPU`` on ZeroGPU).

Every use of a model goes through here, the quick renders (a sampled face, a strength change, a
segmentation catch-up, gallery thumbnails) as much as the long jobs: on ZeroGPU a model is reachable on
the GPU only inside a decorated function.

Arguments, yielded ``Progress`` / ``Notice`` items and results are tensors, arrays, numbers and small
dataclasses, so they survive the trip to and from a ZeroGPU worker; the session is read before and updated
after a task, in the main process (``webapp.actions``). Models are found by key in ``REGISTRIES`` (a forked
worker inherits it), and a job's stop flag by key in ``STOP_FLAGS``: in a worker forked before the job
started the flag is not found and a fresh one is used, and stopping comes from Gradio closing the stream.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch

from editgan_core.losses import image_psnr
from editgan_core.optim import StepInfo
from editgan_core.pipeline import EditGANPipeline, EditResult, EmbedResult, Render
from editgan_core.vectors import EditVector
from webapp.gpu import gpu
from webapp.outcomes import Progress
from webapp.registry import ModelRegistry
from webapp.streaming import stream_job

REGISTRIES: weakref.WeakValueDictionary[str, ModelRegistry] = weakref.WeakValueDictionary()
STOP_FLAGS: weakref.WeakValueDictionary[str, threading.Event] = weakref.WeakValueDictionary()
SECONDS_PER_STEP_256 = 0.15  # budgeted GPU time of one optimisation step at 256 px (generous: a timeout loses work)
OVERHEAD_S = 15.0  # model to GPU, renders, first-call warm-up
MAX_DURATION_S = 300.0
SECONDS_PER_RENDER_256 = 0.05  # budgeted GPU time of one render (+ segmentation) at 256 px
QUICK_OVERHEAD_S = 5.0  # a quick render's ask: short, so it queues ahead of the long jobs

EditStream = Generator[Progress | EditResult, None, None]


def register(registry: ModelRegistry) -> str:
    key = uuid.uuid4().hex
    REGISTRIES[key] = registry
    return key


def track(stop: threading.Event) -> str:
    key = uuid.uuid4().hex
    STOP_FLAGS[key] = stop
    return key


def _pipeline(models: str, bundle_id: str) -> EditGANPipeline:
    return REGISTRIES[models].get(bundle_id)


def _stop_flag(job: str) -> threading.Event:
    return STOP_FLAGS.get(job) or threading.Event()


def task_seconds(models: str, bundle_id: str, steps: int, *_: object) -> float:
    """A task's ``duration`` (called with its arguments): the GPU seconds to ask ZeroGPU for, growing with
    the steps and the pixels (a short ask queues sooner, a short one that runs out loses the work)."""
    side = _pipeline(models, bundle_id).resolution
    return min(MAX_DURATION_S, OVERHEAD_S + max(0, int(steps)) * SECONDS_PER_STEP_256 * (side / 256) ** 2)


def render_seconds(models: str, bundle_id: str, latents: Sequence[torch.Tensor] | torch.Tensor, *_: object) -> float:
    """A quick task's ``duration``: a few seconds, plus the renders it holds."""
    side = _pipeline(models, bundle_id).resolution
    return min(MAX_DURATION_S, QUICK_OVERHEAD_S + len(latents) * SECONDS_PER_RENDER_256 * (side / 256) ** 2)


@gpu(duration=render_seconds)
def render_task(models: str, bundle_id: str, latents: Sequence[torch.Tensor], with_labels: bool) -> list[Render]:
    """Pictures (and, with ``with_labels``, segmentations) of CPU latents, one per latent."""
    pipe = _pipeline(models, bundle_id)
    return [pipe.render(latent, with_labels=with_labels) for latent in latents]


def sample_seconds(models: str, bundle_id: str, *_: object) -> float:
    return render_seconds(models, bundle_id, [None])


@gpu(duration=sample_seconds)
def sample_task(models: str, bundle_id: str, seed: int, truncation: float) -> tuple[torch.Tensor, Render]:
    """The W+ latent of ``seed`` (on the CPU) and its render with labels."""
    pipe = _pipeline(models, bundle_id)
    latent = pipe.sample_latent(seed, truncation)
    return latent, pipe.render(latent)


def _preview(pipe: EditGANPipeline, base: torch.Tensor | None = None):
    """Intermediate pictures of a latent (``base`` None) or of a δw+ on ``base``."""
    if base is None:
        return lambda latent: pipe.render(latent.detach().cpu(), with_labels=False).image
    return lambda delta: pipe.render(base + delta.detach().cpu().reshape(base.shape), with_labels=False).image


@gpu(duration=task_seconds)
def embed_task(models: str, bundle_id: str, steps: int, pixels: np.ndarray, job: str,
               preview_every_s: float) -> Generator[Progress | EmbedResult, None, None]:
    """Encoder only (``steps`` 0) or encoder + ``steps`` optimisation steps; ends with the ``EmbedResult``."""
    pipe = _pipeline(models, bundle_id)
    if steps == 0:
        latent = pipe.encode(pixels).detach().cpu()
        render = pipe.render(latent)
        yield EmbedResult(latent, render, image_psnr(render.image, pixels), 0, False)
        return
    stop = _stop_flag(job)
    result = yield from stream_job(
        lambda callback: pipe.embed(pixels, steps=steps, callback=callback, should_stop=stop.is_set),
        _preview(pipe), stop, preview_every_s)
    result.latent = result.latent.detach().cpu()
    yield result


@gpu(duration=task_seconds)
def edit_task(models: str, bundle_id: str, steps: int, base: torch.Tensor, labels: np.ndarray, job: str,
              preview_every_s: float) -> EditStream:
    """Learn the δw+ that turns ``base``'s segmentation into ``labels``; ends with the ``EditResult``."""
    pipe = _pipeline(models, bundle_id)
    yield from _delta_job(pipe, base, job, preview_every_s, lambda callback, should_stop: pipe.learn_edit(
        base, labels, steps=steps, callback=callback, should_stop=should_stop))


@gpu(duration=task_seconds)
def refine_task(models: str, bundle_id: str, steps: int, base: torch.Tensor,
                vectors: Sequence[tuple[EditVector, float]], job: str, preview_every_s: float) -> EditStream:
    """Refine the composed vectors on ``base``; ends with the ``EditResult``."""
    pipe = _pipeline(models, bundle_id)
    yield from _delta_job(pipe, base, job, preview_every_s, lambda callback, should_stop: pipe.refine(
        base, vectors, steps=steps, callback=callback, should_stop=should_stop))


def _delta_job(pipe: EditGANPipeline, base: torch.Tensor, job: str, preview_every_s: float,
               work: Callable[[Callable[[StepInfo], None], Callable[[], bool]], EditResult]) -> EditStream:
    """Stream a δw+ optimisation on ``base`` (previews of base + δ), then its result with tensors on the CPU
    (the session keeps CPU latents, and a worker's CUDA memory goes with it)."""
    stop = _stop_flag(job)
    result = yield from stream_job(lambda callback: work(callback, stop.is_set), _preview(pipe, base), stop,
                                   preview_every_s)
    result.delta, result.latent = result.delta.detach().cpu(), result.latent.detach().cpu()
    yield result
