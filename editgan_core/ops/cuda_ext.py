"""The CUDA kernels in ``editgan_core/ops/cuda/`` behind autograd Functions, JIT-built once per process.

``available()`` builds the two extensions on first use (ninja, torch's extension cache); when that fails
it warns once and the callers fall back to the native PyTorch ops. The Functions reach the compiled code
only through ``_kernels()``, so their gradient logic can be tested on a CPU against a pure-torch
emulation of the kernels' contract (tests/test_cuda_ext_logic.py).

Kernel contract (what an emulation must do):
  * ``upfirdn2d(x, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1)``: the op of
    ``editgan_core.ops.upfirdn2d`` on an (N, C, H, W) tensor;
  * ``fused_bias_act(x, bias, refer, act, grad, alpha, scale)``: with ``v = x + bias`` (bias along dim 1,
    empty = none) and act 3 = leaky relu of slope alpha: grad 0 gives ``lrelu(v) * scale``; grad 1 gives
    ``v * scale`` where ``refer > 0`` and ``v * alpha * scale`` elsewhere; grad 2 gives zeros.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

CUDA_SOURCES = Path(__file__).resolve().parent / "cuda"  # package data: ships in the wheel
ACT_LEAKY_RELU = 3  # the kernel's activation code for leaky ReLU (1 linear, 2 relu)


class Kernels(NamedTuple):
    """The compiled entry points; a test substitutes functions with the same contract."""

    upfirdn2d: Callable[..., torch.Tensor]
    fused_bias_act: Callable[..., torch.Tensor]


_lock = threading.Lock()
_compiled: Kernels | None = None
_build_error: str | None = None  # set once a build has failed; the failure is not retried


# Each extension's name in torch's build cache and its sources in ``cuda/``.
EXTENSIONS = {
    "editgan_upfirdn2d": ("upfirdn2d.cpp", "upfirdn2d_kernel.cu"),
    "editgan_fused_bias_act": ("fused_bias_act.cpp", "fused_bias_act_kernel.cu"),
}


def build_extension(name: str) -> Any:
    """JIT-compile one extension of ``EXTENSIONS`` (or load it from torch's on-disk cache).

    Separate so that a build step can compile both in parallel processes; later loads hit the cache.
    """
    from torch.utils.cpp_extension import load

    return load(name=name, sources=[str(CUDA_SOURCES / s) for s in EXTENSIONS[name]],
                extra_cuda_cflags=["--use_fast_math"], verbose=False)


def _build() -> Kernels:
    """Both extensions (cached on disk by torch, so later processes only load them)."""
    return Kernels(upfirdn2d=build_extension("editgan_upfirdn2d").upfirdn2d,
                   fused_bias_act=build_extension("editgan_fused_bias_act").fused_bias_act)


def _summarise(error: BaseException, max_lines: int = 6) -> str:
    """The first lines of a build error plus the compiler's own error lines, which ninja buries."""
    lines = [line.strip() for line in f"{type(error).__name__}: {error}".splitlines() if line.strip()]
    picked = lines[:3] + [line for line in lines[3:] if "error" in line.lower()]
    return "\n".join(picked[:max_lines])


def available(strict: bool = False) -> bool:
    """Whether the CUDA ops can run here; builds them on the first call and remembers the answer.

    Without strict, a failed build warns once and returns False (callers use the native ops); with strict
    (``EDITGAN_OPS=cuda``) it raises instead, because the user asked for the kernels explicitly.
    """
    global _compiled, _build_error
    if not torch.cuda.is_available():
        if strict:
            raise RuntimeError("EDITGAN_OPS=cuda but torch.cuda.is_available() is False (no CUDA device or a "
                               "CPU-only torch build)")
        return False
    with _lock:
        if _compiled is None and _build_error is None:
            try:
                _compiled = _build()
            except Exception as error:  # compiler missing, toolkit mismatch, compile error, ...
                _build_error = _summarise(error)
                if not strict:
                    warnings.warn(f"The EditGAN CUDA ops failed to build; the native PyTorch ops are used "
                                  f"instead (set EDITGAN_OPS=native to skip the build).\n{_build_error}",
                                  RuntimeWarning, stacklevel=2)
    if _build_error is not None and strict:
        raise RuntimeError(f"EDITGAN_OPS=cuda but the CUDA ops failed to build:\n{_build_error}")
    return _compiled is not None


def _kernels() -> Kernels:
    """The compiled kernels; the single place the Functions below reach native code (tests patch it)."""
    if _compiled is None:
        available(strict=True)
    assert _compiled is not None
    return _compiled


# --- upfirdn2d ----------------------------------------------------------------------------------------


class Resampling(NamedTuple):
    """One upfirdn2d call's factors and pads (pads may be negative: crop)."""

    up_x: int
    up_y: int
    down_x: int
    down_y: int
    pad_x0: int
    pad_x1: int
    pad_y0: int
    pad_y1: int


def gradient_resampling(r: Resampling, kernel_hw: tuple[int, int], in_hw: tuple[int, int],
                        out_hw: tuple[int, int]) -> Resampling:
    """The resampling whose output, run on grad_out with the flipped kernel, is grad wrt the input.

    upfirdn2d is linear, so its gradient is the transposed op: decimation becomes zero insertion and vice
    versa, and the flipped kernel turns the convolution into its adjoint correlation. The leading pads
    re-centre the flipped kernel; the trailing ones make the result exactly the input's size (they
    absorb rows the forward pass never reached when the padded size was not a multiple of ``down``).
    """
    (kernel_h, kernel_w), (in_h, in_w), (out_h, out_w) = kernel_hw, in_hw, out_hw
    return Resampling(
        up_x=r.down_x, up_y=r.down_y, down_x=r.up_x, down_y=r.up_y,
        pad_x0=kernel_w - r.pad_x0 - 1,
        pad_x1=in_w * r.up_x - out_w * r.down_x + r.pad_x0 - r.up_x + 1,
        pad_y0=kernel_h - r.pad_y0 - 1,
        pad_y1=in_h * r.up_y - out_h * r.down_y + r.pad_y0 - r.up_y + 1,
    )


class _UpFirDn2D(torch.autograd.Function):
    """upfirdn2d whose backward is again this Function, so gradients of any order stay on the GPU."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: torch.Tensor, r: Resampling) -> torch.Tensor:
        out = _kernels().upfirdn2d(x, kernel, *r)
        ctx.save_for_backward(kernel)
        ctx.resampling = r
        ctx.in_hw = (x.shape[2], x.shape[3])
        ctx.out_hw = (out.shape[2], out.shape[3])
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (kernel,) = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            g = gradient_resampling(ctx.resampling, (kernel.shape[0], kernel.shape[1]), ctx.in_hw, ctx.out_hw)
            grad_x = _UpFirDn2D.apply(grad_out, kernel.flip([0, 1]), g)
        return grad_x, None, None


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up_x: int, up_y: int, down_x: int, down_y: int,
              pad_x0: int, pad_x1: int, pad_y0: int, pad_y1: int) -> torch.Tensor:
    """upfirdn2d with the CUDA kernel; differentiable in ``x`` to any order (not in ``kernel``)."""
    r = Resampling(*(int(v) for v in (up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1)))
    return _UpFirDn2D.apply(x, kernel.detach().to(x.device), r)


# --- fused bias + leaky ReLU ---------------------------------------------------------------------------


class _FusedLeakyReLUGrad(torch.autograd.Function):
    """grad_in = lrelu'(out) * grad_out * scale, as its own Function so that double backward works.

    The derivative is piecewise constant, so grad_in is linear in grad_out with the same factor; its
    derivative with respect to the forward output is zero wherever it is defined.
    """

    @staticmethod
    def forward(ctx: Any, grad_out: torch.Tensor, out: torch.Tensor, negative_slope: float,
                scale: float) -> torch.Tensor:
        ctx.save_for_backward(out)
        ctx.negative_slope, ctx.scale = negative_slope, scale
        return _kernels().fused_bias_act(grad_out, grad_out.new_empty(0), out, ACT_LEAKY_RELU, 1,
                                         negative_slope, scale)

    @staticmethod
    def backward(ctx: Any, gradgrad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (out,) = ctx.saved_tensors
        return _FusedLeakyReLUGrad.apply(gradgrad, out, ctx.negative_slope, ctx.scale), None, None, None


class _FusedLeakyReLU(torch.autograd.Function):
    """leaky_relu(x + bias) * scale in one kernel; keeps only the output for backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float,
                scale: float) -> torch.Tensor:
        empty = x.new_empty(0)
        out = _kernels().fused_bias_act(x, empty if bias is None else bias, empty, ACT_LEAKY_RELU, 0,
                                        negative_slope, scale)
        ctx.save_for_backward(out)
        ctx.negative_slope, ctx.scale = negative_slope, scale
        ctx.bias_dtype = None if bias is None else bias.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, None, None]:
        (out,) = ctx.saved_tensors
        grad_x = _FusedLeakyReLUGrad.apply(grad_out, out, ctx.negative_slope, ctx.scale)
        grad_bias = None
        if ctx.bias_dtype is not None and ctx.needs_input_grad[1]:
            dims = [0, *range(2, grad_x.ndim)]
            grad_bias = grad_x.sum(dims).to(ctx.bias_dtype)
        return grad_x, grad_bias, None, None


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float,
                     scale: float) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale`` (bias along dim 1) with the CUDA kernel."""
    if scale <= 0 or negative_slope < 0:
        # The backward reads the branch off the output's sign, which these would break.
        raise ValueError(f"the CUDA fused_leaky_relu needs scale > 0 and negative_slope >= 0, "
                         f"got scale={scale}, negative_slope={negative_slope}")
    return _FusedLeakyReLU.apply(x, bias, float(negative_slope), float(scale))
