"""Which implementation the custom ops use.

`EDITGAN_OPS` picks it for the whole process: ``auto`` (default: CUDA kernels for CUDA tensors when they
build, native PyTorch otherwise), ``native``, ``cuda`` or ``ref`` (the slow textbook formulation that
defines the ops; benchmarks and tests compare against it). ``use_impl`` overrides it for a block.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

IMPLS = ("auto", "native", "cuda", "ref")
_override: str | None = None


def requested_impl() -> str:
    impl = _override or os.environ.get("EDITGAN_OPS", "auto").strip().lower() or "auto"
    if impl not in IMPLS:
        raise ValueError(f"EDITGAN_OPS={impl!r} is not one of {', '.join(IMPLS)}")
    return impl


@contextlib.contextmanager
def use_impl(impl: str) -> Iterator[None]:
    """Temporarily force an implementation (e.g. ``ref`` in a benchmark)."""
    global _override
    if impl not in IMPLS:
        raise ValueError(f"unknown ops implementation {impl!r}; expected one of {', '.join(IMPLS)}")
    previous, _override = _override, impl
    try:
        yield
    finally:
        _override = previous


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
