"""One place where failures become messages in the page (``gr.Error``), never a stack trace or a dead spinner.

A failed call's traceback holds the frames of every function it went through, and those hold the
call's inputs (a 2 MB upload, a decoded picture). Frames that caught an exception and raised another
also reference that exception, which references them back: a cycle that only the garbage collector
frees, so a run of refused requests would keep every input alive. Here, where a failure ends, the
frames of the failed call are cleared and the message travels without them.
"""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import gradio as gr

from editgan_core.bundle import BundleError
from editgan_core.pipeline import InputError
from editgan_core.vectors import VectorError

log = logging.getLogger(__name__)

USER_ERRORS = (InputError, VectorError, BundleError)  # their messages are written for the user
FALLBACK = "Something went wrong on the server (reference {ref}); the page state is unchanged."


def release(exc: BaseException) -> None:
    """Clear the local variables of every finished frame in ``exc``'s traceback and in those of the
    exceptions chained to it, so the failed call's inputs are freed now rather than by the cycle collector."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        traceback.clear_frames(item.__traceback__)
        todo += [item.__cause__, item.__context__]


def _translate(exc: Exception, where: str) -> gr.Error:
    if isinstance(exc, gr.Error):
        return gr.Error(exc.message, duration=exc.duration, visible=exc.visible, title=exc.title,
                        print_exception=False)
    if isinstance(exc, USER_ERRORS):  # a refusal, not a fault: no trace in the server's console
        return gr.Error(str(exc), print_exception=False)
    ref = uuid.uuid4().hex[:8]
    # the trace goes to the server log, the page gets a reference to it (no type names, no paths)
    log.error("unexpected error in %s (reference %s)", where, ref, exc_info=exc)
    return gr.Error(FALLBACK.format(ref=ref), print_exception=False)


def _failed(exc: Exception, where: str) -> gr.Error:
    """The message for ``exc``, with ``exc``'s frames released."""
    try:
        return _translate(exc, where)
    finally:
        release(exc)


def user_errors(fn: Callable) -> Callable:
    """Decorate a callback (plain or generator) so every failure reaches the user as a readable message.

    The message is raised outside the ``except`` block (no ``__context__`` back to the failure), and the
    wrapper's own frame drops its arguments as it raises, so nothing of the request outlives it.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any):
            error = None
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                error = _failed(exc, fn.__name__)
            if error is None:
                return
            try:
                raise error
            finally:
                del error, args, kwargs

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        error = None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            error = _failed(exc, fn.__name__)
        try:
            raise error
        finally:
            del error, args, kwargs

    return wrapper
