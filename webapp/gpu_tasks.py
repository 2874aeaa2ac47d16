"""The studio's GPU work as functions of plain data: what runs under ``gpu`` (``spaces.GPU`` on ZeroGPU).

Every use of a model goes through here, the quick renders (a sampled face, a strength change, a
segmentation catch-up, gallery thumbnails) as much as the long jobs, and section 7's annotation work (samples,
suggestions, training): on ZeroGPU a model is reachable on the GPU only inside a decorated function.

Arguments, yielded ``Progress`` / ``Notice`` items and results are tensors, arrays, numbers and small
dataclasses, so they survive the trip to and from a ZeroGPU worker; the session is read before and updated
after a task, in the main process (``webapp.actions``). Models are found by key in ``REGISTRIES`` (a forked
worker inherits it), and a job's stop flag by key in ``STOP_FLAGS``: in a worker forked before the job
started the flag is not found and a fresh one is used, and stopping comes from Gradio closing the stream.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from editgan_core.annotation.sources import draw_samples
from editgan_core.annotation.suggest import MAX_SIDE as SUGGEST_MAX_SIDE
from editgan_core.annotation.suggest import Suggestion, suggest
from editgan_core.annotation.training import (
    CrossValidation,
    TrainingCancelled,
    TrainSettings,
    TrainStatus,
    train_final,
    training_set,
    validate,
)
from editgan_core.dataset import CALIBRATION_ITEMS, DatasetReport, DatasetSettings, generate, run_record
from editgan_core.optim import StepInfo
from editgan_core.pipeline import EditGANPipeline, EditResult, EmbedResult, Render
from editgan_core.pti import TuningResult
from editgan_core.side_effects import SideEffectSettings
from editgan_core.train.preset_pairs import PresetResult, learn_preset_from_pairs
from editgan_core.utils import tensor_to_uint8
from editgan_core.vectors import EditVector
from webapp.gpu import gpu
from webapp.outcomes import Notice, Progress
from webapp.registry import ModelRegistry
from webapp.streaming import stream_job

REGISTRIES: weakref.WeakValueDictionary[str, ModelRegistry] = weakref.WeakValueDictionary()
STOP_FLAGS: weakref.WeakValueDictionary[str, threading.Event] = weakref.WeakValueDictionary()
SECONDS_PER_STEP_256 = 0.15  # budgeted GPU time of one optimisation step at 256 px (generous: a timeout loses work)
OVERHEAD_S = 15.0  # model to GPU, renders, first-call warm-up
MAX_DURATION_S = 300.0
# side_effects' Gauss-Newton rounds on one pair: each a Jacobian of ~50 rows (one backward pass each)
CORRECTION_STEPS_PER_PAIR = SideEffectSettings.iters * 50
SECONDS_PER_RENDER_256 = 0.05  # budgeted GPU time of one render (+ segmentation) at 256 px
QUICK_OVERHEAD_S = 5.0  # a quick render's ask: short, so it queues ahead of the long jobs
# what a pivotal-tuning step costs, in optimisation steps of an embedding and in encoder-only embeddings (encoder
# + render): measured by ``python -m webapp.bench_tuning_price`` (docs/results.md, #22)
TUNING_PER_EMBED_STEP = 3.0
TUNING_PER_ENCODER_EMBED = 0.75

SECONDS_PER_SUGGEST_256 = 10.0  # budgeted k-means time of one suggestion clustered at 256 px
SECONDS_PER_MEMBER_STEP = 0.02  # budgeted time of one ensemble member's step at TRAIN_PIXELS_REF x TRAIN_CHANNELS_REF
TRAIN_PIXELS_REF, TRAIN_CHANNELS_REF = 2048, 1000

R = TypeVar("R")
EditStream = Generator[Progress | EditResult, None, None]


@dataclass
class Embedded:
    """What ``embed_task`` ends with: the embedding (with its fidelity report) and the estimated time of one
    pivotal-tuning step on the task's device, which prices the "High fidelity" option before it is chosen."""

    result: EmbedResult
    tuning_step_s: float


def register(registry: ModelRegistry) -> str:
    key = uuid.uuid4().hex
    REGISTRIES[key] = registry
    return key


def track(stop: threading.Event) -> str:
    key = uuid.uuid4().hex
    STOP_FLAGS[key] = stop
    return key


def _pipeline(models: str, bundle_id: str, tuned: dict[str, torch.Tensor] | None = None) -> EditGANPipeline:
    """The model, or with ``tuned`` (a session's pivotally tuned synthesis weights) a copy that uses them."""
    pipe = REGISTRIES[models].get(bundle_id)
    return pipe.with_tuned(tuned) if tuned is not None else pipe


def _stop_flag(job: str) -> threading.Event:
    return STOP_FLAGS.get(job) or threading.Event()


def task_seconds(models: str, bundle_id: str, steps: int, *_: object, **__: object) -> float:
    """A task's ``duration`` (called with its arguments): the GPU seconds to ask ZeroGPU for, growing with
    the steps and the pixels (a short ask queues sooner, a short one that runs out loses the work)."""
    side = _pipeline(models, bundle_id).resolution
    return min(MAX_DURATION_S, OVERHEAD_S + max(0, int(steps)) * SECONDS_PER_STEP_256 * (side / 256) ** 2)


def render_seconds(models: str, bundle_id: str, latents: Sequence[torch.Tensor] | torch.Tensor, *_: object,
                   **__: object) -> float:
    """A quick task's ``duration``: a few seconds, plus the renders it holds."""
    side = _pipeline(models, bundle_id).resolution
    return min(MAX_DURATION_S, QUICK_OVERHEAD_S + len(latents) * SECONDS_PER_RENDER_256 * (side / 256) ** 2)


@gpu(duration=render_seconds)
def render_task(models: str, bundle_id: str, latents: Sequence[torch.Tensor], with_labels: bool,
                tuned: dict[str, torch.Tensor] | None = None) -> list[Render]:
    """Pictures (and, with ``with_labels``, segmentations) of CPU latents, one per latent (by the session's
    tuned weights, if any)."""
    pipe = _pipeline(models, bundle_id, tuned)
    return [pipe.render(latent, with_labels=with_labels) for latent in latents]


def sample_seconds(models: str, bundle_id: str, *_: object) -> float:
    return render_seconds(models, bundle_id, [None])


@gpu(duration=sample_seconds)
def sample_task(models: str, bundle_id: str, seed: int, truncation: float) -> tuple[torch.Tensor, Render]:
    """The W+ latent of ``seed`` (on the CPU) and its render with labels."""
    pipe = _pipeline(models, bundle_id)
    latent = pipe.sample_latent(seed, truncation)
    return latent, pipe.render(latent)


@gpu(duration=sample_seconds)
def spread_task(models: str, bundle_id: str) -> float:
    """The model's ``latent_spread`` (a mapping-network pass over seeded samples), which bounds every vector
    applied in the main process."""
    return _pipeline(models, bundle_id).latent_spread


def _preview(pipe: EditGANPipeline, base: torch.Tensor | None = None):
    """Intermediate pictures of a latent (``base`` None) or of a δw+ on ``base``."""
    if base is None:
        return lambda latent: pipe.render(latent.detach().cpu(), with_labels=False).image
    return lambda delta: pipe.render(base + delta.detach().cpu().reshape(base.shape), with_labels=False).image


class StepClock:
    """Times an optimisation's steps by the gaps between its callbacks, leaving out the callbacks' own work
    (previews) and the first step (the encoder's start and first-call warm-up)."""

    def __init__(self) -> None:
        self.seconds, self.steps = 0.0, 0
        self._left: float | None = None

    def wrap(self, callback: Callable[[StepInfo], None]) -> Callable[[StepInfo], None]:
        def timed(info: StepInfo) -> None:
            if self._left is not None:
                self.seconds, self.steps = self.seconds + time.perf_counter() - self._left, self.steps + 1
            callback(info)
            self._left = time.perf_counter()

        return timed


@gpu(duration=task_seconds)
def embed_task(models: str, bundle_id: str, steps: int, pixels: np.ndarray, job: str,
               preview_every_s: float) -> Generator[Progress | Embedded, None, None]:
    """Encoder only (``steps`` 0) or encoder + ``steps`` optimisation steps; ends with ``Embedded``, whose
    tuning price comes from this embedding's own timing (running a tuning step to price it would cost one more
    step in every worker)."""
    pipe = _pipeline(models, bundle_id)
    start = time.perf_counter()
    if steps == 0:
        result = pipe.encoder_embed(pixels, report=False)
        tuning_step_s = TUNING_PER_ENCODER_EMBED * (time.perf_counter() - start)
        result.fidelity = pipe.fidelity_report(pixels, result.render)
    else:
        stop, clock = _stop_flag(job), StepClock()
        result = yield from stream_job(
            lambda callback: pipe.embed(pixels, steps=steps, callback=clock.wrap(callback), should_stop=stop.is_set),
            _preview(pipe), stop, preview_every_s)
        result.latent = result.latent.detach().cpu()
        step_s = (clock.seconds / clock.steps if clock.steps
                  else (time.perf_counter() - start) / max(1, result.steps_done))  # a single step: all of it
        tuning_step_s = TUNING_PER_EMBED_STEP * step_s
    yield Embedded(result, tuning_step_s)


def tune_seconds(models: str, bundle_id: str, steps: int, *_: object, **__: object) -> float:
    """A tuning step runs the generator forward and backward at two latents (pivot and regulariser) and
    updates its weights: budgeted as three optimisation steps."""
    return task_seconds(models, bundle_id, 3 * int(steps))


@gpu(duration=tune_seconds)
def tune_task(models: str, bundle_id: str, steps: int, latent: torch.Tensor, pixels: np.ndarray, job: str,
              preview_every_s: float) -> Generator[Progress | TuningResult, None, None]:
    """Pivotal tuning of the model around ``latent`` towards ``pixels``; ends with the ``TuningResult``, whose
    CPU state dict the session turns into its tuned copy (``EditGANPipeline.with_tuned``)."""
    pipe = _pipeline(models, bundle_id)
    stop = _stop_flag(job)
    result = yield from stream_job(
        lambda callback: pipe.pivotal_tune(pixels, latent, steps=steps, callback=callback, should_stop=stop.is_set),
        lambda image: tensor_to_uint8(image)[0], stop, preview_every_s)
    yield result


@gpu(duration=task_seconds)
def edit_task(models: str, bundle_id: str, steps: int, base: torch.Tensor, labels: np.ndarray, job: str,
              preview_every_s: float, tuned: dict[str, torch.Tensor] | None = None) -> EditStream:
    """Learn the δw+ that turns ``base``'s segmentation into ``labels`` (with the session's tuned weights, if
    any); ends with the ``EditResult``."""
    pipe = _pipeline(models, bundle_id, tuned)
    yield from _delta_job(pipe, base, job, preview_every_s, lambda callback, should_stop: pipe.learn_edit(
        base, labels, steps=steps, callback=callback, should_stop=should_stop))


def refine_seconds(models: str, bundle_id: str, steps: int, base: torch.Tensor, vectors: object, job: str,
                   preview_every_s: float, tuned: object = None, keep_parts: bool = False) -> float:
    """Refinement's steps, plus about ``CORRECTION_STEPS_PER_PAIR`` for keeping this face's other parts."""
    return task_seconds(models, bundle_id, max(0, int(steps)) + (CORRECTION_STEPS_PER_PAIR if keep_parts else 0))


@gpu(duration=refine_seconds)
def refine_task(models: str, bundle_id: str, steps: int, base: torch.Tensor,
                vectors: Sequence[tuple[EditVector, float]], job: str, preview_every_s: float,
                tuned: dict[str, torch.Tensor] | None = None, keep_parts: bool = False) -> EditStream:
    """Refine the composed vectors on ``base`` (with the session's tuned weights, if any), after correcting them
    for this face's side effects with ``keep_parts``; ends with the ``EditResult``."""
    pipe = _pipeline(models, bundle_id, tuned)
    yield from _delta_job(pipe, base, job, preview_every_s, lambda callback, should_stop: pipe.refine(
        base, vectors, steps=steps, callback=callback, should_stop=should_stop, keep_parts=keep_parts))


def _delta_job(pipe: EditGANPipeline, base: torch.Tensor, job: str, preview_every_s: float,
               work: Callable[[Callable[[StepInfo], None], Callable[[], bool]], EditResult]) -> EditStream:
    """Stream a δw+ optimisation on ``base`` (previews of base + δ), then its result with tensors on the CPU
    (the session keeps CPU latents, and a worker's CUDA memory goes with it)."""
    stop = _stop_flag(job)
    result = yield from stream_job(lambda callback: work(callback, stop.is_set), _preview(pipe, base), stop,
                                   preview_every_s)
    result.delta, result.latent = result.delta.detach().cpu(), result.latent.detach().cpu()
    yield result


def preset_seconds(models: str, bundle_id: str, steps: int, pairs: int, name: str, job: str,
                   preview_every_s: float, keep_parts: bool = True) -> float:
    """A preset's shared optimisation renders every pair at every step; keeping the other parts costs about
    ``CORRECTION_STEPS_PER_PAIR`` more per pair."""
    per_pair = max(1, int(steps)) + (CORRECTION_STEPS_PER_PAIR if keep_parts else 0)
    return task_seconds(models, bundle_id, per_pair * max(1, int(pairs)))


@gpu(duration=preset_seconds)
def preset_task(models: str, bundle_id: str, steps: int, pairs: int, name: str, job: str,
                preview_every_s: float, keep_parts: bool = True) -> Generator[Progress | PresetResult, None, None]:
    """Learn preset ``name`` from its ``pairs`` stored pairs (previews: the vector on the average face);
    ends with the ``PresetResult`` (not saved yet). ``keep_parts``: correct it so the parts it should not
    touch keep their colour and size (``side_effects``)."""
    pipe = _pipeline(models, bundle_id)
    stop = _stop_flag(job)
    settings = SideEffectSettings() if keep_parts else None
    result = yield from stream_job(
        lambda callback: learn_preset_from_pairs(pipe, name, steps, callback=callback, should_stop=stop.is_set,
                                                 side_effects=settings),
        _preview(pipe, pipe.mean_latent()), stop, preview_every_s)
    yield result


def dataset_seconds(models: str, bundle_id: str, n: int, *_: object) -> float:
    """Calibration draws plus about two draws per item, each rendered, segmented and scored."""
    return render_seconds(models, bundle_id, [None] * 2 * (CALIBRATION_ITEMS + 2 * max(1, int(n))))


@gpu(duration=dataset_seconds)
def dataset_task(models: str, bundle_id: str, n: int, folder: str, job: str
                 ) -> Generator[Progress | DatasetReport, None, None]:
    """Write a labelled dataset of ``n`` items into ``folder`` (``editgan_core.dataset`` defaults); ends with
    its ``DatasetReport``."""
    pipe = _pipeline(models, bundle_id)
    stop = _stop_flag(job)
    settings = DatasetSettings()
    record = run_record(pipe, settings)

    def work(callback: Callable[[StepInfo], None]) -> DatasetReport:
        def on_item(done: int, total: int) -> None:
            callback(StepInfo(done, total, 0.0, {}, 0.0, torch.zeros(0)))

        return generate(pipe, Path(folder), range(n), settings, record, on_item=on_item, should_stop=stop.is_set,
                        show_progress=False)

    report = yield from stream_job(work, lambda _: None, stop, float("inf"))
    yield report


# -- section 7 · annotate ------------------------------------------------------------------------------------------
def samples_seconds(models: str, bundle_id: str, seeds: Sequence[int], *_: object) -> float:
    return render_seconds(models, bundle_id, seeds)


@gpu(duration=samples_seconds)
def samples_task(models: str, bundle_id: str, seeds: Sequence[int], truncation: float
                 ) -> list[tuple[torch.Tensor, np.ndarray]]:
    """(CPU latent, picture) of each seed, for the annotation set (which the main process writes)."""
    return draw_samples(_pipeline(models, bundle_id), seeds, truncation)


def suggest_seconds(models: str, bundle_id: str, *_: object) -> float:
    """A render, then k-means on its reduced features (at most ``MAX_SIDE`` a side)."""
    side = min(_pipeline(models, bundle_id).resolution, SUGGEST_MAX_SIDE)
    return min(MAX_DURATION_S, render_seconds(models, bundle_id, [None]) + SECONDS_PER_SUGGEST_256 * (side / 256) ** 2)


@gpu(duration=suggest_seconds)
def suggest_task(models: str, bundle_id: str, latent: torch.Tensor, regions: int) -> Suggestion:
    """Regions to name with one click (and the segmenter's map, if any) for the image at ``latent``."""
    return suggest(_pipeline(models, bundle_id), latent, regions)


@dataclass
class TrainedSegmenter:
    """The final ensemble as plain data (its config and CPU weights), which the main process installs."""

    config: dict[str, object]
    state: dict[str, torch.Tensor]
    annotations: int
    seconds: float


@dataclass
class Validated:
    """What cross-validation found, and how long it took (with the features it synthesised again)."""

    cv: CrossValidation | None
    seconds: float


def _member_steps_seconds(pipe: EditGANPipeline, settings: TrainSettings, annotations: int, member_steps: int
                          ) -> float:
    """The features of every annotation (a render each), then ``member_steps`` steps of ``settings.pixels``
    pixels over all feature channels."""
    side = pipe.resolution
    renders = annotations * SECONDS_PER_RENDER_256 * (side / 256) ** 2
    per_step = (SECONDS_PER_MEMBER_STEP * settings.pixels / TRAIN_PIXELS_REF
                * sum(pipe.generator.feature_channels()) / TRAIN_CHANNELS_REF)
    return min(MAX_DURATION_S, OVERHEAD_S + renders + member_steps * per_step)


def train_seconds(models: str, bundle_id: str, latents: Sequence[torch.Tensor], _labels: object,
                  settings: TrainSettings, *_: object) -> float:
    return _member_steps_seconds(_pipeline(models, bundle_id), settings, len(latents),
                                 settings.members * settings.steps)


def validate_seconds(models: str, bundle_id: str, latents: Sequence[torch.Tensor], _labels: object,
                     settings: TrainSettings, *_: object) -> float:
    return _member_steps_seconds(_pipeline(models, bundle_id), settings, len(latents),
                                 settings.cv_folds(len(latents)) * settings.cv_members * settings.cv_steps)


def _training_job(job: str, run: Callable[[Callable[[TrainStatus], None], Callable[[], bool]], R]
                  ) -> Generator[Progress | Notice, None, R | None]:
    """Stream one training phase (``Progress`` per member step); a cancel ends it with a ``Notice`` saying what
    it left, and ``None``."""
    stop = _stop_flag(job)

    def work(callback: Callable[[StepInfo], None]) -> R:
        def progress(status: TrainStatus) -> None:
            callback(StepInfo(status.step, status.steps, status.loss, {}, status.loss, torch.zeros(0)))

        return run(progress, stop.is_set)

    try:
        return (yield from stream_job(work, lambda _: None, stop, float("inf")))
    except TrainingCancelled as exc:
        yield Notice(str(exc))
        return None


@gpu(duration=train_seconds)
def train_segmenter_task(models: str, bundle_id: str, latents: Sequence[torch.Tensor], labels: Sequence[np.ndarray],
                         settings: TrainSettings, job: str
                         ) -> Generator[Progress | Notice | TrainedSegmenter, None, None]:
    """Train the final segmentation ensemble on the annotations; ends with it as ``TrainedSegmenter`` (or a
    ``Notice`` when cancelled)."""
    pipe = _pipeline(models, bundle_id)
    data = training_set(pipe, latents, labels)
    report = yield from _training_job(job, lambda progress, should_stop: train_final(data, settings, progress,
                                                                                     should_stop))
    if report is not None:
        config, state = report.ensemble.to_state()
        yield TrainedSegmenter(config, state, report.annotations, report.seconds)


@gpu(duration=validate_seconds)
def validate_segmenter_task(models: str, bundle_id: str, latents: Sequence[torch.Tensor],
                            labels: Sequence[np.ndarray], settings: TrainSettings, job: str
                            ) -> Generator[Progress | Notice | Validated, None, None]:
    """Cross-validate smaller ensembles on the annotations (after the final one is installed; at least two
    folds); ends with ``Validated`` (or a ``Notice`` when cancelled)."""
    start = time.perf_counter()
    pipe = _pipeline(models, bundle_id)
    data = training_set(pipe, latents, labels)
    cv = yield from _training_job(job, lambda progress, should_stop: validate(data, settings, progress,
                                                                              should_stop))
    if cv is not None:
        yield Validated(cv, time.perf_counter() - start)
