"""Native ops equal the reference definition and support first and second derivatives."""

from __future__ import annotations

import importlib
import itertools
import threading

import pytest
import torch

from editgan_core.ops import fused_leaky_relu, upfirdn2d, use_impl
from editgan_core.ops.backend import requested_impl, resolve_impl
from editgan_core.ops.upfirdn2d import upfirdn2d_native, upfirdn2d_ref

BLUR = torch.tensor([1.0, 3.0, 3.0, 1.0])
BLUR = BLUR[None] * BLUR[:, None] / 64
# (formulation, formulation, device) pairs a whole generator must agree under; the CUDA one on a GPU only.
PAIRS = [("ref", "native", "cpu"),
         pytest.param("native", "cuda", "cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
             not torch.cuda.is_available(), reason="needs a CUDA device")])]


@pytest.fixture
def strict_fp32(monkeypatch):
    """TF32 rounds convolution inputs to 10 bits: a 1e-7 difference could flip one, so compare without it."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)

CASES = [  # (up, down, pad x0, x1, y0, y1)
    (1, 1, (1, 1, 1, 1)),
    (1, 1, (2, 1, 2, 1)),
    (2, 1, (2, 1, 2, 1)),  # Upsample
    (2, 1, (1, 1, 1, 1)),  # Blur after a transposed conv
    (1, 2, (1, 1, 1, 1)),  # Blur before a strided conv
    (2, 2, (0, 0, 0, 0)),
    (4, 1, (3, 2, 1, 4)),
    (1, 1, (-1, 2, 0, -1)),  # negative pads crop
    ((2, 1), (1, 2), (1, 2, 0, 1)),  # different factors per axis
]


@pytest.mark.parametrize(("up", "down", "pad"), CASES)
@pytest.mark.parametrize("kernel", ["blur", "asymmetric"])
def test_native_upfirdn2d_matches_reference(up, down, pad, kernel):
    torch.manual_seed(0)
    k = BLUR if kernel == "blur" else torch.randn(3, 5)
    x = torch.randn(2, 3, 7, 9)
    ref = upfirdn2d(x, k, up=up, down=down, pad=pad, impl="ref")
    native = upfirdn2d(x, k, up=up, down=down, pad=pad, impl="native")
    assert native.shape == ref.shape
    assert torch.allclose(native, ref, atol=1e-5)


@pytest.mark.parametrize(("up", "down", "pad"), CASES)
def test_native_upfirdn2d_gradcheck(up, down, pad):
    torch.manual_seed(1)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 4, dtype=torch.float64)

    def fn(inp):
        return upfirdn2d(inp, k, up=up, down=down, pad=pad, impl="native")

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_fused_leaky_relu_native_matches_reference_and_gradchecks():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(fused_leaky_relu(x, b, impl="native"), fused_leaky_relu(x, b, impl="ref"))
    # keep away from the kink, where finite differences are meaningless
    with torch.no_grad():
        x += 0.1 * torch.sign(x + b.view(1, -1, 1, 1))
    assert torch.autograd.gradcheck(lambda a, c: fused_leaky_relu(a, c, impl="native"), (x, b))
    assert torch.autograd.gradgradcheck(lambda a, c: fused_leaky_relu(a, c, impl="native"), (x, b))
    flat = torch.randn(3, 4)
    assert fused_leaky_relu(flat, torch.zeros(4)).shape == (3, 4)


def test_impl_selection(monkeypatch):
    x = torch.zeros(1)
    monkeypatch.setenv("EDITGAN_OPS", "auto")
    assert resolve_impl(x) == "native"  # CPU tensors never take the CUDA kernels
    with use_impl("ref"):
        assert resolve_impl(x) == "ref"
    monkeypatch.setenv("EDITGAN_OPS", "cuda")
    with pytest.raises(RuntimeError, match="EDITGAN_OPS=cuda"):
        resolve_impl(x)
    monkeypatch.setenv("EDITGAN_OPS", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        requested_impl()
    with pytest.raises(ValueError):
        upfirdn2d(torch.zeros(3, 4, 4), BLUR)



def test_use_impl_holds_per_thread(monkeypatch):
    """Two sessions served at once each run the implementation they asked for; the process default is untouched."""
    module = importlib.import_module("editgan_core.ops.upfirdn2d")  # the package exports a function of that name
    monkeypatch.setenv("EDITGAN_OPS", "auto")
    ran: dict[str, list[str]] = {}

    def spy(name: str, real):
        def recorded(*args):
            ran.setdefault(threading.current_thread().name, []).append(name)
            return real(*args)
        return recorded

    for name in ("ref", "native"):  # record which formulation each thread's call reached
        monkeypatch.setattr(module, f"upfirdn2d_{name}", spy(name, getattr(module, f"upfirdn2d_{name}")))
    x = torch.randn(1, 1, 8, 8)
    both_inside, both_read = threading.Barrier(3), threading.Barrier(3)
    seen: dict[str, str] = {}

    def session(impl: str) -> None:
        with use_impl(impl):
            both_inside.wait(timeout=30)  # the other session has entered its own block by now
            upfirdn2d(x, BLUR, pad=(1, 2, 1, 2))
            seen[impl] = requested_impl()
            both_read.wait(timeout=30)

    threads = [threading.Thread(target=session, args=(impl,), name=impl) for impl in ("ref", "native")]
    for t in threads:
        t.start()
    both_inside.wait(timeout=30)
    outside = requested_impl()
    both_read.wait(timeout=30)
    for t in threads:
        t.join(timeout=30)
    assert seen == {"ref": "ref", "native": "native"}
    assert ran == {"ref": ["ref"], "native": ["native"]}
    assert outside == "auto"

@pytest.mark.parametrize(("impl_a", "impl_b", "device"), PAIRS)
def test_generator_identical_under_both_formulations(impl_a, impl_b, device, strict_fp32):
    from editgan_core.models.stylegan2 import Generator

    torch.manual_seed(3)
    g = Generator(32, 32, 2, channels={4: 16, 8: 16, 16: 8, 32: 8}).eval().to(device)
    w = torch.randn(2, g.n_latent, 32, device=device)
    noise = g.stored_noise()
    with torch.no_grad():
        with use_impl(impl_a):
            a = g.synthesis(w, noise=noise).image
        with use_impl(impl_b):
            b = g.synthesis(w, noise=noise).image
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("combo", list(itertools.product([1, 2], [1, 2])))
def test_upfirdn2d_output_shape_formula(combo):
    up, down = combo
    x = torch.randn(1, 1, 8, 8)
    out = upfirdn2d(x, BLUR, up=up, down=down, pad=(1, 2))
    assert out.shape[-1] == (8 * up + 3 - 4) // down + 1


def test_native_upfirdn2d_matches_reference_on_random_configurations():
    """Crops that reach past the zero padding, odd factors per axis, tiny inputs."""
    rng = torch.Generator().manual_seed(7)

    def draw(lo, hi):
        return int(torch.randint(lo, hi + 1, (), generator=rng))

    checked = 0
    while checked < 300:
        kernel = torch.randn(draw(1, 5), draw(1, 5), dtype=torch.float64, generator=rng)
        x = torch.randn(1, 2, draw(1, 9), draw(1, 9), dtype=torch.float64, generator=rng)
        args = [draw(1, 3) for _ in range(4)] + [draw(-5, 5) for _ in range(4)]
        try:
            ref = upfirdn2d_ref(x, kernel, *args)
        except RuntimeError:
            continue  # the definition itself has no output for this configuration
        if ref.numel() == 0:
            continue
        checked += 1
        assert torch.allclose(upfirdn2d_native(x, kernel, *args), ref, atol=1e-12), args


@pytest.mark.parametrize(("impl_a", "impl_b", "device"), PAIRS)
def test_generator_and_discriminator_gradients_match_across_formulations(impl_a, impl_b, device):
    """In-place activations, the 1x1 matmul path and the CUDA kernels' backward Functions must leave first
    and second derivatives intact."""
    from editgan_core.models.stylegan2 import Discriminator, Generator

    torch.manual_seed(4)
    g = Generator(16, 16, 2, channels={4: 8, 8: 8, 16: 8}).double().to(device)
    d = Discriminator(16, channels={4: 8, 8: 8, 16: 8}).double().to(device)
    w = torch.randn(2, g.n_latent, 16, dtype=torch.float64).to(device)
    noise = [n.double() for n in g.stored_noise()]

    def grads(impl):
        with use_impl(impl):
            latent = w.clone().requires_grad_(True)
            image = g.synthesis(latent, noise=noise).image
            (gw,) = torch.autograd.grad(image.square().sum(), latent, create_graph=True)
            gw.square().sum().backward()  # path-length style double backward
            real = image.detach().clone().requires_grad_(True)
            (gx,) = torch.autograd.grad(d(real).sum(), real, create_graph=True)
            gx.square().sum().backward()  # R1 double backward
            out = [image.detach(), gw.detach(), gx.detach()]
            # A structurally zero second derivative may come back as None from one formulation only.
            out += [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in (*g.parameters(),
                                                                                     *d.parameters())]
            g.zero_grad()
            d.zero_grad()
            return out

    for a, b in zip(grads(impl_a), grads(impl_b), strict=True):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-7)
