"""The ``gpu`` decorator: ``spaces.GPU`` on a ZeroGPU Space, a stand-in with the same signature elsewhere.

On ZeroGPU a decorated function runs in a forked worker that holds the GPU: its arguments, its result and
every item it yields travel through ``pickle``, and whatever it changes in place stays in the worker. So
decorated functions take and return plain data (``webapp.gpu_tasks``), never a session. The stand-in
records every decorated function (``GPU_FUNCTIONS``) and, with ``EDITGAN_EMULATE_ZEROGPU=1`` (or
``EMULATE.on``), round-trips arguments and results through ``pickle`` the same way, so a laptop or a test
sees what a Space would.
"""

from __future__ import annotations

import functools
import inspect
import os
import pickle
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Duration = int | float | Callable[..., float]
GPU_FUNCTIONS: dict[str, tuple[Callable, Duration]] = {}  # qualified name -> (undecorated function, duration)


class _Emulate:
    on = os.environ.get("EDITGAN_EMULATE_ZEROGPU", "") == "1"


EMULATE = _Emulate()


def _through_pickle(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


class _Held:
    """How many emulated GPU functions are running (a stream counts until it ends or is closed)."""

    depth = 0
    lock = threading.Lock()


def inside_gpu_function() -> bool:
    """Under emulation: whether a decorated function is running now; a test uses it to check that no model
    is used outside one (on ZeroGPU the GPU exists only there)."""
    return _Held.depth > 0


@contextmanager
def _held() -> Iterator[None]:
    with _Held.lock:
        _Held.depth += 1
    try:
        yield
    finally:
        with _Held.lock:
            _Held.depth -= 1


def _emulated_stream(items: Iterator[Any]) -> Iterator[Any]:
    with _held():
        try:
            for item in items:
                yield _through_pickle(item)
        finally:
            items.close()


def _stand_in(fn: Callable | None = None, *, duration: Duration = 60, **_: Any) -> Callable:
    """``spaces.GPU`` off ZeroGPU: runs the function here, as ``spaces.GPU`` does there (``duration`` may be
    seconds or a callable taking the function's arguments, as on ZeroGPU)."""
    if fn is None:
        return lambda f: _stand_in(f, duration=duration)
    GPU_FUNCTIONS[f"{fn.__module__}.{fn.__qualname__}"] = (fn, duration)
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
            if not EMULATE.on:
                return fn(*args, **kwargs)
            args, kwargs = _through_pickle((args, kwargs))
            return _emulated_stream(fn(*args, **kwargs))

        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not EMULATE.on:
            return fn(*args, **kwargs)
        args, kwargs = _through_pickle((args, kwargs))
        with _held():
            result = fn(*args, **kwargs)
        return _through_pickle(result)

    return call


try:  # ZeroGPU Spaces: a GPU is attached only while a decorated function runs
    import spaces

    gpu: Callable[..., Any] = spaces.GPU
except ImportError:  # laptops, CI, dedicated-GPU Spaces
    gpu = _stand_in
