"""Per-browser-session state: the current latent, an undoable history and the user's vector folder.

Nothing here knows Gradio; ``SessionBox`` is the small deep-copyable object ``gr.State`` holds, so
each browser tab (and each API client) gets its own session, created on first use.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from editgan_core.pipeline import EditResult
from editgan_core.vectors import EditVector, open_library
from webapp.photo_state import PhotoState

R = TypeVar("R")

HISTORY_LIMIT = 60  # steps kept per session; a 64 px step is ~0.1 MB
SOURCE_KINDS = ("sample", "embed")  # steps that start from a new picture; reset returns to the latest one
ACTIVE_KINDS = ("apply", "refine")  # steps made from active vectors: their sliders stay, a refine can run again


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
    vector: EditVector | None = None  # the editing vector that made this step (learned, composed, refined): exported


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
            return self.push(replace(origin, kind="reset", label=f"reset to {origin.label}", base=None, active=(),
                                     vector=None))


class NewestWins:
    """Orders overlapping requests of one kind in a session (strength changes): each takes a ticket as it
    arrives, and they run one at a time; one that finds a newer request already applied does nothing. So the
    final state is the newest request's, whatever order the requests are scheduled or finish in."""

    def __init__(self) -> None:
        self._tickets = 0
        self._applied = 0
        self._issue = threading.Lock()
        self._run = threading.Lock()

    def ticket(self) -> int:
        """Take a ticket; do it first thing when a request arrives."""
        with self._issue:
            self._tickets += 1
            return self._tickets

    def run(self, ticket: int, work: Callable[[], R]) -> R | None:
        """``work()`` for the request holding ``ticket``, or None when a newer request has been applied."""
        with self._run:
            if ticket <= self._applied:
                return None
            self._applied = ticket
            return work()


class Debounce:
    """Waits until something has been still for a while (``touch`` marks a change). One caller waits at a
    time and sees later changes extend its wait; the others return at once, so a burst of changes holds one
    thread rather than one per change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0.0
        self._waiting = False

    def touch(self) -> None:
        with self._lock:
            self._last = time.monotonic()

    def wait_still(self, still_s: float) -> bool:
        """Return True once ``still_s`` have passed since the last change; False at once while another caller
        waits (that caller covers this change)."""
        with self._lock:
            if self._waiting:
                return False
            self._waiting = True
        while True:
            with self._lock:
                left = self._last + still_s - time.monotonic()
                if left <= 0:
                    self._waiting = False
                    return True
            time.sleep(left)


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
        self.last_paint: tuple[torch.Tensor, np.ndarray] | None = None  # its (latent, painted labels), for presets
        self.ui_cache: dict[str, object] = {}  # what the page last showed, to skip resending it
        # Pivotally tuned synthesis weights for the current photo (``webapp.actions.tuning``; CPU tensors that
        # GPU tasks turn into a tuned copy): one copy per session, dropped with a new image or model;
        # ``tuning_step_s`` prices the next tuning.
        self.tuned: dict[str, torch.Tensor] | None = None
        self.tuning_step_s: float | None = None
        self.photo = PhotoState()  # the uploaded photo at full size and its alignment (``webapp.actions.photo``)
        self.strengths = NewestWins()  # strength changes (slider, API) may overlap: the newest one wins
        self.strengths_still = Debounce()  # the paint canvas follows once the strengths have been still
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
