"""A core call with a per-step callback, run as a generator of ``Progress`` (what Gradio streams).

The optimisation loops report through callbacks, while Gradio streams by iterating a generator: a
worker thread and a queue connect the two. Previews are rendered by time, not per step: each one
costs a generator forward plus a page update of every output of the event (Gradio processes skipped
outputs too), so a fixed share of the steps would make a fast job pay for pictures nobody has time
to look at, and a slow one wait long between them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import numpy as np
import torch

from editgan_core.optim import StepInfo
from webapp.outcomes import Progress

PREVIEW_EVERY_S = 1.0  # an intermediate picture once the job has run this long, and again each time after

R = TypeVar("R")


class _Finished:
    def __init__(self, value: Any) -> None:
        self.value = value


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def stream_job(work: Callable[[Callable[[StepInfo], None]], R], preview: Callable[[torch.Tensor], np.ndarray],
               stop: threading.Event, preview_every_s: float = PREVIEW_EVERY_S) -> Generator[Progress, None, R]:
    """Run ``work(callback)`` in a worker thread, yield a ``Progress`` per step and ``return`` its result.

    Use as ``result = yield from stream_job(...)``. A step carries a preview when ``preview_every_s``
    have passed since the start or the last preview (0: every step); the last step carries none, since
    the result follows at once. If the consumer goes away (page closed, event cancelled), ``stop`` is
    set so the loop ends too.
    """
    q: queue.SimpleQueue = queue.SimpleQueue()
    last_preview = time.monotonic()

    def callback(info: StepInfo) -> None:
        nonlocal last_preview
        now = time.monotonic()
        picture = None
        if info.step < info.steps and now - last_preview >= preview_every_s:
            picture, last_preview = preview(info.variable), now
        q.put(Progress(info.step, info.steps, info.loss, picture))

    def target() -> None:
        try:
            q.put(_Finished(work(callback)))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(_Failed(exc))

    threading.Thread(target=target, name="editgan-job", daemon=True).start()
    finished = False
    try:
        while True:
            item = q.get()
            if isinstance(item, _Finished):
                finished = True
                return item.value
            if isinstance(item, _Failed):
                finished = True
                raise item.error
            yield item
    finally:
        if not finished:
            stop.set()
