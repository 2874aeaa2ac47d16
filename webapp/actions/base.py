"""What every section's actions share: the app's models, and steps made from latents.

Every action goes through ``EditGANPipeline`` (never around it) and returns arrays, ``Step``s or
small outcome objects (``webapp.outcomes``); the UI layer only maps them onto components.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from editgan_core.pipeline import EditGANPipeline, InputError, Render, SegmenterMissingError
from webapp import gpu_tasks
from webapp.outcomes import Notice, Progress
from webapp.registry import ModelRegistry
from webapp.session import Session, Step
from webapp.streaming import PREVIEW_EVERY_S

EDITOR_SIDE = 256  # small models are painted on an enlarged canvas, then read back per model pixel


def number_in(value: Any, what: str, low: float, high: float) -> float:
    """``value`` as a finite number within [low, high], else an ``InputError`` naming the range."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be a number between {low:g} and {high:g}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise InputError(f"{what} must be between {low:g} and {high:g}, got {number:g}")
    return number


def whole_number_in(value: Any, what: str, low: int, high: int) -> int:
    return int(number_in(value, what, low, high))


class StudioBase:
    """The registry and a scratch folder for one app; sessions are passed in.

    ``preview_every_s``: how often long actions show an intermediate picture (0: every step).
    """

    def __init__(self, registry: ModelRegistry, preview_every_s: float = PREVIEW_EVERY_S) -> None:
        self.registry = registry
        self.preview_every_s = preview_every_s
        self.gpu_models = gpu_tasks.register(registry)  # how GPU tasks find the models (``webapp.gpu_tasks``)
        # every session's folder lives in here, and all of it goes when the app object does (or at exit)
        self.workdir = Path(tempfile.mkdtemp(prefix="editgan-studio-"))
        weakref.finalize(self, shutil.rmtree, self.workdir, ignore_errors=True)

    def pipeline(self, session: Session) -> EditGANPipeline:
        """The session's model. The first time: its latent spread (which checks every vector applied here) is
        measured by a GPU task, since the main process runs no model; and the fidelity report's discriminator
        and file digests are loaded here, where ZeroGPU's forked workers inherit them (each worker's own copy
        would be lost with it, and every embedding would load and hash them again)."""
        pipe = self.registry.get(session.bundle_id)
        if "latent_spread" not in vars(pipe):  # a ``functools.cached_property``: kept in the instance once set
            pipe.latent_spread = gpu_tasks.spread_task(self.gpu_models, session.bundle_id)
            _ = pipe.fidelity.key
        return pipe

    def tuned_weights(self, session: Session) -> dict[str, torch.Tensor] | None:
        """The session's pivotally tuned synthesis weights (CPU tensors, for GPU tasks), None when it has none."""
        return session.tuned

    def editor_factor(self, pipe: EditGANPipeline) -> int:
        """How much the paint canvas enlarges the label map (1 for models of 256 px and more)."""
        return max(1, EDITOR_SIDE // pipe.resolution)

    def render(self, session: Session, latents: Sequence[torch.Tensor], with_labels: bool = True,
               tuned: bool = True) -> list[Render]:
        """Renders of CPU latents by the session's model (its tuned copy unless ``tuned`` is False: shared
        pictures such as thumbnails), as a GPU task (``webapp.gpu_tasks``)."""
        return gpu_tasks.render_task(self.gpu_models, session.bundle_id, list(latents), with_labels,
                                     tuned=self.tuned_weights(session) if tuned else None)

    def _step(self, session: Session, kind: str, label: str, latent: torch.Tensor, with_labels: bool = True,
              **extra: Any) -> Step:
        latent = latent.detach().cpu()
        render = self.render(session, [latent], with_labels)[0]
        return Step(kind, label, latent, render.image, render.labels, **extra)

    def _require_current(self, session: Session) -> Step:
        if session.current is None:
            raise InputError("no picture yet: sample a face, pick an example or upload a photo first (step 1)")
        return session.current

    def current_with_labels(self, session: Session) -> Step | None:
        """The current step, segmented now if a fast path (a strength drag) left its labels for later."""
        current = session.current
        pipe = self.pipeline(session)
        if current is None or current.labels is not None or pipe.segmenter is None:
            return current
        labels = self.render(session, [current.latent])[0].labels
        return session.history.replace(current, replace(current, labels=labels))

    def require_segmenter(self, session: Session) -> EditGANPipeline:
        """The session's pipeline, or ``SegmenterMissingError`` saying what annotation would unlock."""
        pipe = self.pipeline(session)
        note = pipe.capabilities.missing().get("segmenter")
        if note:
            raise SegmenterMissingError(note)
        return pipe

    def _require_labelled(self, session: Session) -> Step:
        self._require_current(session)
        return self.current_with_labels(session)

    def _gpu_result(self, task: Iterator[Any]) -> Generator[Any, None, Any]:
        """Pass a GPU task's progress and notices on and ``return`` its last item, the result; use as
        ``result = yield from self._gpu_result(task)``."""
        result = None
        with closing(task):  # a closed page or a cancelled event ends the task (and its job) at once
            for item in task:
                if isinstance(item, Progress | Notice):
                    yield item
                else:
                    result = item
        return result

    def _class_names(self, pipe: EditGANPipeline, ids: Sequence[int]) -> str:
        names = {c.id: c.name for c in pipe.bundle.classes}
        return ", ".join(names.get(i, str(i)) for i in ids)

    def _export_dir(self, session: Session) -> Path:
        folder = session.workdir / "export" / f"{len(session.history.steps):03d}-{session.history.index:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
