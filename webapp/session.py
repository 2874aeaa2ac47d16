"""Per-browser-session state: the current latent, an undoable history and the user's vector folder.

Nothing here knows Gradio; ``SessionBox`` is the small deep-copyable object ``gr.State`` holds, so
each browser tab (and each API client) gets its own session, created on first use.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from editgan_core.pipeline import EditResult
from editgan_core.vectors import EditVector, open_library

HISTORY_LIMIT = 60  # steps kept per session; a 64 px step is ~0.1 MB
SOURCE_KINDS = ("sample", "embed")  # steps that start from a new picture; reset returns to the latest one


@dataclass(frozen=True)
class Step:
    """One result in the history: the latent and what it renders to."""

    kind: str  # sample | embed | edit | apply | refine | reset
    label: str
    latent: torch.Tensor  # (1, n_latent, style_dim), CPU
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray | None  # (H, W) uint8
    base: torch.Tensor | None = None  # for "apply": the latent the active vectors are added to
    active: tuple[tuple[str, float], ...] = ()  # for "apply": vector names and strengths
    source: np.ndarray | None = None  # for "embed": the photo that was embedded


class History:
    """A linear undo/redo list of ``Step``s; a new step drops the redo tail."""

    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self.limit = limit
        self.steps: list[Step] = []
        self.index = -1
        self._lock = threading.RLock()  # a session's events may overlap (a strength drag while an edit finishes)

    @property
    def current(self) -> Step | None:
        return self.steps[self.index] if self.steps else None

    @property
    def can_undo(self) -> bool:
        return self.index > 0

    @property
    def can_redo(self) -> bool:
        return 0 <= self.index < len(self.steps) - 1

    def push(self, step: Step) -> Step:
        with self._lock:
            del self.steps[self.index + 1:]
            self.steps.append(step)
            if len(self.steps) > self.limit:
                del self.steps[: len(self.steps) - self.limit]
            self.index = len(self.steps) - 1
            return step

    def amend(self, step: Step) -> Step:
        """Replace the current step (a strength slider dragged again is one step, not twenty)."""
        with self._lock:
            if not self.steps:
                return self.push(step)
            del self.steps[self.index + 1:]
            self.steps[self.index] = step
            return step

    def replace(self, old: Step, new: Step) -> Step | None:
        """Swap ``old`` for ``new`` if it is still the current step (filled in later, e.g. its labels)."""
        with self._lock:
            if self.steps and self.steps[self.index] is old:
                self.steps[self.index] = new
            return self.current

    def rewrite(self, change: Callable[[Step], Step]) -> None:
        """Replace every step by ``change(step)`` (a vector renamed: the steps that use it follow)."""
        with self._lock:
            self.steps = [change(step) for step in self.steps]

    def undo(self) -> Step | None:
        with self._lock:
            if self.can_undo:
                self.index -= 1
            return self.current

    def redo(self) -> Step | None:
        with self._lock:
            if self.can_redo:
                self.index += 1
            return self.current

    def goto(self, index: int) -> Step | None:
        with self._lock:
            if self.steps:
                self.index = max(0, min(int(index), len(self.steps) - 1))
            return self.current

    def origin(self) -> Step | None:
        """The latest sample/embed step at or before the current one: the picture edits started from."""
        for step in reversed(self.steps[: self.index + 1]):
            if step.kind in SOURCE_KINDS:
                return step
        return self.steps[0] if self.steps else None

    def reset(self) -> Step | None:
        """Go back to the origin as a new (undoable) step."""
        with self._lock:
            origin = self.origin()
            if origin is None:
                return None
            return self.push(replace(origin, kind="reset", label=f"reset to {origin.label}", base=None, active=()))


class Session:
    """One user's work on one bundle; owns a temp folder for exports (saved vectors go to the bundle's
    persistent library, shared with other sessions and processes)."""

    def __init__(self, bundle_id: str, latent_shape: tuple[int, int], presets_dir: Path | None,
                 parent_dir: Path | None = None) -> None:
        self.bundle_id = bundle_id
        self.workdir = Path(tempfile.mkdtemp(prefix="editgan-session-", dir=parent_dir))
        self.library = open_library(bundle_id, latent_shape, presets_dir)
        self.history = History()
        self.last_edit: EditResult | None = None  # the latest learned edit, for "save as vector"
        self.last_vector: EditVector | None = None  # the latest learned/refined/active vector, for export
        self.ui_cache: dict[str, object] = {}  # what the page last showed, to skip resending it
        # Pivotally tuned synthesis weights for the current photo (``webapp.actions.tuning``; CPU tensors that
        # GPU tasks turn into a tuned copy): one copy per session, dropped with a new image or model;
        # ``tuning_step_s`` prices the next tuning.
        self.tuned: dict[str, torch.Tensor] | None = None
        self.tuning_step_s: float | None = None
        self._job: threading.Event | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> Step | None:
        return self.history.current

    def new_job(self) -> threading.Event:
        """Start a long job: its stop flag (``is_set`` is the ``should_stop``); a newer job or ``cancel``
        sets the flags of older ones."""
        with self._lock:
            if self._job is not None:
                self._job.set()
            self._job = event = threading.Event()
        return event

    def cancel(self) -> bool:
        """Ask the running job to stop at its next step; False when nothing was running."""
        with self._lock:
            running = self._job is not None and not self._job.is_set()
            if self._job is not None:
                self._job.set()
        return running

    def close(self) -> None:
        self.cancel()
        self.tuned = None
        shutil.rmtree(self.workdir, ignore_errors=True)


class SessionBox:
    """What ``gr.State`` holds: empty until first use, so its initial value deep-copies trivially."""

    def __init__(self) -> None:
        self.session: Session | None = None

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


def close_box(box: SessionBox | None) -> None:
    """``gr.State`` delete callback: drop the session's temp folder when the tab goes away."""
    if isinstance(box, SessionBox):
        box.close()
