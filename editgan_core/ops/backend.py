"""Which implementation the custom ops use.

`EDITGAN_OPS` picks it for the whole process: ``auto`` (default: CUDA kernels for CUDA tensors when they
build, native PyTorch otherwise), ``native``, ``cuda`` or ``ref`` (the slow textbook formulation that
defines the ops; benchmarks and tests compare against it). ``use_impl`` overrides it for a block of the
current thread or asyncio task only (a context variable, as ``decimal.localcontext`` does), so a request that
picks an implementation never changes it for another session served at the same time; the ops' ``impl=``
argument picks it for one call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar

import torch

IMPLS = ("auto", "native", "cuda", "ref")
_override: ContextVar[str | None] = ContextVar("editgan_ops_impl", default=None)


def requested_impl() -> str:
    impl = _override.get() or os.environ.get("EDITGAN_OPS", "auto").strip().lower() or "auto"
    if impl not in IMPLS:
        raise ValueError(f"EDITGAN_OPS={impl!r} is not one of {', '.join(IMPLS)}")
    return impl


@contextlib.contextmanager
def use_impl(impl: str) -> Iterator[None]:
    """Force an implementation in this thread or task for the block (e.g. ``ref`` in a benchmark)."""
    if impl not in IMPLS:
        raise ValueError(f"unknown ops implementation {impl!r}; expected one of {', '.join(IMPLS)}")
    token = _override.set(impl)
    try:
        yield
    finally:
        _override.reset(token)


def resolve_impl(x: torch.Tensor) -> str:
    """The implementation to run for tensor ``x``: 'native', 'cuda' or 'ref'."""
    impl = requested_impl()
    if impl in ("native", "ref"):
        return impl
    if x.device.type != "cuda":
        if impl == "cuda":
            raise RuntimeError("EDITGAN_OPS=cuda but the tensor is on " + x.device.type)
        return "native"
    from editgan_core.ops import cuda_ext

    if cuda_ext.available(strict=impl == "cuda"):
        return "cuda"
    return "native"
