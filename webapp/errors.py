"""One place where failures become messages in the page (``gr.Error``), never a stack trace or a dead spinner."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from editgan_core.bundle import BundleError
from editgan_core.pipeline import InputError
from editgan_core.vectors import VectorError

log = logging.getLogger(__name__)

USER_ERRORS = (InputError, VectorError, BundleError)  # their messages are written for the user


def _translate(exc: Exception, where: str) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, USER_ERRORS):
        return gr.Error(str(exc))
    log.exception("unexpected error in %s", where)  # the trace goes to the server log, not the page
    return gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). The page state is unchanged.")


def user_errors(fn: Callable) -> Callable:
    """Decorate a callback (plain or generator) so every failure reaches the user as a readable message."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _translate(exc, fn.__name__) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _translate(exc, fn.__name__) from None

    return wrapper
