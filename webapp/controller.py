"""``Studio``: the studio's actions on a ``Session``, in plain Python — what each button does, minus Gradio.

The actions live by notebook section in ``webapp.actions`` (image, paint, edit, vectors, history,
view); this module joins them and owns the sessions: created on first use, replaced when another
model is chosen, closed when idle. Long actions are generators: they yield ``Progress`` (with a
preview picture now and then) and ``Notice``s, then one outcome (``webapp.outcomes``).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from editgan_core.pipeline import InputError
from webapp.actions.annotate import AnnotateActions
from webapp.actions.edit import EditActions
from webapp.actions.history import HistoryActions
from webapp.actions.image import ImageActions
from webapp.actions.presets import PresetActions
from webapp.actions.tuning import TuningActions
from webapp.actions.view import ViewActions
from webapp.outcomes import View
from webapp.registry import ModelRegistry
from webapp.session import Session, SessionBox
from webapp.streaming import PREVIEW_EVERY_S

INITIAL_SEED = 0  # the face every new session starts on
SESSION_IDLE_S = 3 * 3600  # sessions unused this long are closed (history and temp folder dropped)


class Studio(ImageActions, TuningActions, EditActions, PresetActions, ViewActions, HistoryActions,
             AnnotateActions):
    """The actions behind the page; one per app, sessions passed in."""

    def __init__(self, registry: ModelRegistry, session_idle_s: float = SESSION_IDLE_S,
                 preview_every_s: float = PREVIEW_EVERY_S) -> None:
        super().__init__(registry, preview_every_s)
        self.session_idle_s = session_idle_s
        self._boxes: dict[int, SessionBox] = {}
        self._last_used: dict[int, float] = {}
        self._lock = threading.Lock()

    def session(self, box: SessionBox, bundle_id: str | None = None) -> Session:
        """The box's session, created on first use (or replaced when another model is chosen).

        A new session starts on the face of ``INITIAL_SEED``: the page shows that face before any
        event has run, so the first action of a visitor (or an API client) already has a picture.
        """
        bundle_id = bundle_id or (box.session.bundle_id if box.session else self.registry.default_id)
        if bundle_id is None:
            raise InputError("no model bundle is installed: put one into checkpoints/ (see the README)")
        if box.session is None or box.session.bundle_id != bundle_id:
            pipe = self.registry.get(bundle_id)
            box.close()
            box.session = Session(bundle_id, pipe.latent_shape, pipe.bundle.vectors_dir, self.workdir)
            self.sample(box.session, INITIAL_SEED)
            self._track(box)
        with self._lock:
            self._last_used[id(box)] = time.monotonic()
        return box.session

    def _track(self, box: SessionBox) -> None:
        """Remember the box, and close sessions idle for longer than ``SESSION_IDLE_S`` (their history
        and temp folder), so a long-running public server does not keep every visitor's work forever."""
        now = time.monotonic()
        with self._lock:
            self._boxes[id(box)] = box
            self._last_used[id(box)] = now
            idle = [k for k, t in self._last_used.items() if now - t > self.session_idle_s]
            stale = [self._boxes.pop(k) for k in idle if k in self._boxes]
            for k in idle:
                self._last_used.pop(k, None)
        for old in stale:
            old.close()

    def initial_page(self, bundle_id: str | None = None) -> tuple[View, list[tuple[np.ndarray, str]], list[str]]:
        """What a new session shows (view, gallery items, vector names), for the page's initial values."""
        box = SessionBox()
        try:
            session = self.session(box, bundle_id)
            return self.view(session), *self.gallery(session)
        finally:
            box.close()
            with self._lock:
                self._boxes.pop(id(box), None)
                self._last_used.pop(id(box), None)
