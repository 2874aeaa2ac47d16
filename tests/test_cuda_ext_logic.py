"""The CUDA backend's autograd logic, checked on a CPU by standing in for the compiled kernels.

``cuda_ext`` reaches native code only through ``cuda_ext._kernels()``; these tests patch it with a
pure-torch emulation of the kernels' contract, so the Functions' forward, backward and double backward
(what R1 and path-length regularisation need) are checked everywhere. The tests at the end build the
real extension and compare it with the native ops; they run only where a CUDA device is present.
"""

from __future__ import annotations

import math
import random
import warnings

import pytest
import torch

from editgan_core.ops import cuda_ext
from editgan_core.ops.fused_act import fused_leaky_relu as fused_leaky_relu_op
from editgan_core.ops.upfirdn2d import upfirdn2d_native, upfirdn2d_ref

SLOPE, SCALE = 0.2, math.sqrt(2)
BLUR = torch.tensor([1.0, 3.0, 3.0, 1.0])
BLUR_2D = torch.outer(BLUR, BLUR) / BLUR.sum() ** 2


# --- CPU emulation of the compiled kernels ------------------------------------------------------------


def _emulated_upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up_x: int, up_y: int, down_x: int, down_y: int,
                        pad_x0: int, pad_x1: int, pad_y0: int, pad_y1: int) -> torch.Tensor:
    args = (up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1)
    assert all(type(v) is int for v in args), args
    assert x.ndim == 4 and kernel.ndim == 2 and min(up_x, up_y, down_x, down_y) >= 1
    return upfirdn2d_ref(x, kernel.to(x), *args)


def _emulated_fused_bias_act(x: torch.Tensor, bias: torch.Tensor, refer: torch.Tensor, act: int, grad: int,
                             alpha: float, scale: float) -> torch.Tensor:
    assert act == cuda_ext.ACT_LEAKY_RELU and grad in (0, 1, 2)
    v = x + bias.to(x).view(1, -1, *([1] * (x.ndim - 2))) if bias.numel() else x
    if grad == 2:
        return torch.zeros_like(v)
    if grad == 1:
        assert refer.shape == x.shape, "grad=1 needs the forward output as refer"
    branch = v if grad == 0 else refer
    return torch.where(branch > 0, v, v * alpha) * scale


EMULATED = cuda_ext.Kernels(upfirdn2d=_emulated_upfirdn2d, fused_bias_act=_emulated_fused_bias_act)


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_ext, "_kernels", lambda: EMULATED)


# --- upfirdn2d ----------------------------------------------------------------------------------------


Case = tuple[tuple[int, int], tuple[int, int], cuda_ext.Resampling]


def _random_resamplings(count: int, seed: int) -> list[Case]:
    """(input size, kernel size, resampling) triples with non-empty outputs, crops included."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        in_h, in_w = rng.randint(1, 9), rng.randint(1, 9)
        k_h, k_w = rng.randint(1, 5), rng.randint(1, 5)
        up_x, up_y, down_x, down_y = (rng.randint(1, 3) for _ in range(4))
        pads = [rng.randint(-3, 4) for _ in range(4)]
        r = cuda_ext.Resampling(up_x, up_y, down_x, down_y, *pads)
        # Crops must leave something of the upsampled image, and the output must not be empty.
        crop_x, crop_y = min(pads[0], 0) + min(pads[1], 0), min(pads[2], 0) + min(pads[3], 0)
        if in_w * up_x + crop_x <= 0 or in_h * up_y + crop_y <= 0:
            continue
        if in_w * up_x + pads[0] + pads[1] < k_w or in_h * up_y + pads[2] + pads[3] < k_h:
            continue
        cases.append(((in_h, in_w), (k_h, k_w), r))
    return cases


@pytest.mark.parametrize("op", [upfirdn2d_ref, upfirdn2d_native], ids=["ref", "native"])
def test_gradient_resampling_is_the_adjoint_of_upfirdn2d(op) -> None:
    """The gradient pads, checked against torch autograd through the torch ops on many shapes."""
    gen = torch.Generator().manual_seed(0)
    checked = 0
    for (in_h, in_w), (k_h, k_w), r in _random_resamplings(300, seed=1):
        x = torch.randn(2, 2, in_h, in_w, dtype=torch.float64, generator=gen, requires_grad=True)
        kernel = torch.randn(k_h, k_w, dtype=torch.float64, generator=gen)
        try:
            out = op(x, kernel, *r)
        except RuntimeError:
            # The native op cannot crop into the trailing zeros of the zero insertion (its transposed
            # convolution never produces them); those rare geometries are covered by the ref run.
            assert op is upfirdn2d_native
            continue
        grad_out = torch.randn(out.shape, dtype=torch.float64, generator=gen)
        (expected,) = torch.autograd.grad(out, x, grad_out)
        g = cuda_ext.gradient_resampling(r, (k_h, k_w), (in_h, in_w), (out.shape[2], out.shape[3]))
        got = op(grad_out, kernel.flip([0, 1]), *g)
        assert got.shape == x.shape, (r, g)
        torch.testing.assert_close(got, expected, msg=lambda m, r=r, g=g: f"{r} -> {g}: {m}")
        checked += 1
    assert checked > 280


FUNCTION_CASES = [
    ((8, 8), cuda_ext.Resampling(2, 2, 1, 1, 2, 1, 2, 1)),  # StyleGAN2 upsample blur
    ((8, 8), cuda_ext.Resampling(1, 1, 2, 2, 1, 1, 1, 1)),  # downsample blur
    ((7, 5), cuda_ext.Resampling(1, 1, 1, 1, 2, 2, 2, 2)),  # blur after a transposed conv
    ((6, 7), cuda_ext.Resampling(3, 1, 1, 2, -1, 2, 0, -2)),  # asymmetric factors, crops
    ((5, 6), cuda_ext.Resampling(2, 3, 3, 2, 3, -2, -1, 1)),
]


@pytest.mark.parametrize(("size", "r"), FUNCTION_CASES)
def test_upfirdn2d_function_matches_native(emulated: None, size: tuple[int, int],
                                           r: cuda_ext.Resampling) -> None:
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    out = cuda_ext.upfirdn2d(x, BLUR_2D, *r)
    expected = upfirdn2d_native(x, BLUR_2D.double(), *r)
    torch.testing.assert_close(out, expected)
    grad_out = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad_out)[0],
                               torch.autograd.grad(expected, x, grad_out)[0])


# Smaller inputs for gradcheck, whose numerical Jacobians grow with the square of the size.
GRADCHECK_CASES = [((4, 4), FUNCTION_CASES[0][1]), ((4, 4), FUNCTION_CASES[1][1]), ((3, 4), FUNCTION_CASES[2][1]),
                   ((5, 4), FUNCTION_CASES[3][1]), ((3, 3), FUNCTION_CASES[4][1])]


@pytest.mark.parametrize(("size", "r"), GRADCHECK_CASES)
def test_upfirdn2d_function_gradcheck(emulated: None, size: tuple[int, int], r: cuda_ext.Resampling) -> None:
    x = torch.randn(1, 2, *size, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(3, 4, dtype=torch.float64)  # asymmetric, so a missing flip would show

    def op(t: torch.Tensor) -> torch.Tensor:
        return cuda_ext.upfirdn2d(t, kernel, *r)

    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,))


# --- fused bias + leaky ReLU --------------------------------------------------------------------------


def _away_from_kink(shape: tuple[int, ...], bias: torch.Tensor | None) -> torch.Tensor:
    """An input whose pre-activation stays clear of 0, where leaky ReLU has no derivative."""
    v = torch.randn(shape, dtype=torch.float64)
    v = v.sign() * (v.abs() + 0.1)
    if bias is not None:
        v = v - bias.detach().view(1, -1, *([1] * (len(shape) - 2)))
    return v.requires_grad_()


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_leaky_relu_function_matches_native(emulated: None, shape: tuple[int, ...],
                                                  with_bias: bool) -> None:
    bias = torch.randn(shape[1], dtype=torch.float64, requires_grad=True) if with_bias else None
    x = _away_from_kink(shape, bias)
    out = cuda_ext.fused_leaky_relu(x, bias, SLOPE, SCALE)
    expected = fused_leaky_relu_op(x, bias, SLOPE, SCALE, impl="native")
    torch.testing.assert_close(out, expected)
    inputs = [x] if bias is None else [x, bias]
    grad_out = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, inputs, grad_out),
                         torch.autograd.grad(expected, inputs, grad_out), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_leaky_relu_function_gradcheck(emulated: None, with_bias: bool) -> None:
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True) if with_bias else None
    x = _away_from_kink((2, 3, 4), bias)
    inputs = (x,) if bias is None else (x, bias)

    def op(*args: torch.Tensor) -> torch.Tensor:
        return cuda_ext.fused_leaky_relu(args[0], args[1] if len(args) > 1 else None, SLOPE, SCALE)

    assert torch.autograd.gradcheck(op, inputs)
    assert torch.autograd.gradgradcheck(op, inputs)


def _r1_like_penalty_grads(upfirdn, act, x: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Gradients of a gradient penalty through blur + activation, as in R1 regularisation."""
    hidden = act(upfirdn(x, BLUR_2D.double(), 2, 2, 1, 1, 2, 1, 2, 1), bias, SLOPE, SCALE)
    score = (hidden * hidden.roll(1, dims=3)).sum()
    (grad_x,) = torch.autograd.grad(score, x, create_graph=True)
    return torch.autograd.grad(grad_x.pow(2).sum(), (x, bias))


def _check_double_backward_matches_native(device: str) -> None:
    bias = torch.randn(3, dtype=torch.float64, device=device, requires_grad=True)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, device=device, requires_grad=True)
    got = _r1_like_penalty_grads(cuda_ext.upfirdn2d, cuda_ext.fused_leaky_relu, x, bias)

    def native_act(t: torch.Tensor, b: torch.Tensor, slope: float, scale: float) -> torch.Tensor:
        return fused_leaky_relu_op(t, b, slope, scale, impl="native")

    expected = _r1_like_penalty_grads(upfirdn2d_native, native_act, x, bias)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_double_backward_through_both_ops_matches_native(emulated: None) -> None:
    _check_double_backward_matches_native("cpu")


# --- building and falling back ------------------------------------------------------------------------


def test_sources_are_where_the_builder_looks() -> None:
    for name in ("upfirdn2d.cpp", "upfirdn2d_kernel.cu", "fused_bias_act.cpp", "fused_bias_act_kernel.cu"):
        assert (cuda_ext.CUDA_SOURCES / name).is_file(), name


def test_no_cuda_device_means_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_ext.available() is False
    with pytest.raises(RuntimeError, match="is_available"):
        cuda_ext.available(strict=True)


def test_failed_build_warns_once_then_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = []

    def failing_build() -> cuda_ext.Kernels:
        builds.append(1)
        raise RuntimeError("Error building extension 'editgan_upfirdn2d'\nkernel.cu(3): error: boom")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda_ext, "_compiled", None)
    monkeypatch.setattr(cuda_ext, "_build_error", None)
    monkeypatch.setattr(cuda_ext, "_build", failing_build)
    with pytest.warns(RuntimeWarning, match="failed to build") as record:
        assert cuda_ext.available() is False
    message = str(record[0].message)
    assert "native PyTorch ops" in message and "error: boom" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cuda_ext.available() is False  # remembered: no second build, no second warning
    with pytest.raises(RuntimeError, match="error: boom"):
        cuda_ext.available(strict=True)
    assert len(builds) == 1


def test_leaky_relu_needs_a_sign_preserving_activation() -> None:
    with pytest.raises(ValueError, match="scale"):
        cuda_ext.fused_leaky_relu(torch.ones(2, 2), None, SLOPE, -1.0)


# --- the real kernels (CUDA hosts only) ---------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA_CASES = [
    *FUNCTION_CASES,
    ((16, 16), cuda_ext.Resampling(1, 1, 1, 1, 0, 0, 0, 0)),
    ((33, 47), cuda_ext.Resampling(2, 2, 1, 1, 2, 1, 2, 1)),  # more than one tile
    ((70, 40), cuda_ext.Resampling(1, 1, 2, 2, 1, 1, 1, 1)),
    ((9, 11), cuda_ext.Resampling(4, 1, 1, 3, -5, 3, 2, -4)),
]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(("size", "r"), CUDA_CASES)
@pytest.mark.parametrize("kernel_hw", [(4, 4), (3, 5), (1, 1)])
def test_cuda_upfirdn2d_matches_native(size: tuple[int, int], r: cuda_ext.Resampling,
                                       kernel_hw: tuple[int, int]) -> None:
    assert cuda_ext.available(strict=True)
    kernel = torch.rand(kernel_hw, dtype=torch.float64)
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    expected = upfirdn2d_native(x, kernel, *r)
    grad_out = torch.randn_like(expected)
    (expected_grad,) = torch.autograd.grad(expected, x, grad_out)

    x_gpu = x.detach().float().cuda().requires_grad_()
    out = cuda_ext.upfirdn2d(x_gpu, kernel.float().cuda(), *r)
    (grad,) = torch.autograd.grad(out, x_gpu, grad_out.float().cuda())
    torch.testing.assert_close(out.double().cpu(), expected.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad.double().cpu(), expected_grad, atol=1e-5, rtol=1e-5)

    for dtype, tol in ((torch.float16, 1e-2), (torch.bfloat16, 5e-2)):
        low = cuda_ext.upfirdn2d(x.detach().to("cuda", dtype), kernel.cuda(), *r)
        assert low.dtype == dtype
        torch.testing.assert_close(low.double().cpu(), expected.detach(), atol=tol, rtol=tol)


@pytest.mark.cuda
@needs_cuda
def test_cuda_upfirdn2d_gradcheck_and_edge_cases() -> None:
    assert cuda_ext.available(strict=True)
    kernel = torch.randn(3, 4, dtype=torch.float64, device="cuda")
    for size, r in GRADCHECK_CASES:
        x = torch.randn(1, 2, *size, dtype=torch.float64, device="cuda", requires_grad=True)

        def op(t: torch.Tensor, r: cuda_ext.Resampling = r) -> torch.Tensor:
            return cuda_ext.upfirdn2d(t, kernel, *r)

        assert torch.autograd.gradcheck(op, (x,))
        assert torch.autograd.gradgradcheck(op, (x,))

    # A kernel too large for a shared-memory tile takes the direct path.
    big = torch.rand(80, 80, dtype=torch.float64)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    r = cuda_ext.Resampling(1, 1, 1, 1, 79, 79, 79, 79)
    torch.testing.assert_close(cuda_ext.upfirdn2d(x.cuda(), big.cuda(), *r).cpu(),
                               upfirdn2d_native(x, big, *r))
    # More planes than a grid has blocks along z, and a non-contiguous input.
    x = torch.randn(70000, 1, 4, 4)
    r = cuda_ext.Resampling(2, 2, 1, 1, 2, 1, 2, 1)
    torch.testing.assert_close(cuda_ext.upfirdn2d(x.cuda(), BLUR_2D.cuda(), *r).cpu(),
                               upfirdn2d_native(x, BLUR_2D, *r), atol=1e-5, rtol=1e-5)
    x = torch.randn(2, 5, 9, 3).transpose(1, 3)
    torch.testing.assert_close(cuda_ext.upfirdn2d(x.cuda(), BLUR_2D.cuda(), *r).cpu(),
                               upfirdn2d_native(x, BLUR_2D, *r), atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 8, 9, 17)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_cuda_fused_leaky_relu_matches_native(shape: tuple[int, ...], with_bias: bool) -> None:
    assert cuda_ext.available(strict=True)
    bias = torch.randn(shape[1], dtype=torch.float64, requires_grad=True) if with_bias else None
    x = _away_from_kink(shape, bias)
    expected = fused_leaky_relu_op(x, bias, SLOPE, SCALE, impl="native")
    inputs = [x] if bias is None else [x, bias]
    grad_out = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, inputs, grad_out)

    x_gpu = x.detach().float().cuda().requires_grad_()
    bias_gpu = None if bias is None else bias.detach().float().cuda().requires_grad_()
    out = cuda_ext.fused_leaky_relu(x_gpu, bias_gpu, SLOPE, SCALE)
    gpu_inputs = [x_gpu] if bias_gpu is None else [x_gpu, bias_gpu]
    grads = torch.autograd.grad(out, gpu_inputs, grad_out.float().cuda())
    torch.testing.assert_close(out.double().cpu(), expected, atol=1e-5, rtol=1e-5)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g.double().cpu(), e, atol=1e-5, rtol=1e-5)

    x64 = x.detach().cuda().requires_grad_()
    bias64 = None if bias is None else bias.detach().cuda().requires_grad_()
    inputs64 = (x64,) if bias64 is None else (x64, bias64)

    def op(*args: torch.Tensor) -> torch.Tensor:
        return cuda_ext.fused_leaky_relu(args[0], args[1] if len(args) > 1 else None, SLOPE, SCALE)

    assert torch.autograd.gradcheck(op, inputs64)
    assert torch.autograd.gradgradcheck(op, inputs64)


@pytest.mark.cuda
@needs_cuda
def test_cuda_double_backward_matches_native() -> None:
    assert cuda_ext.available(strict=True)
    _check_double_backward_matches_native("cuda")
