"""StyleGAN2's custom ops with native-PyTorch, CUDA and reference implementations."""

from editgan_core.ops.backend import requested_impl, resolve_impl, use_impl
from editgan_core.ops.fused_act import FusedLeakyReLU, fused_leaky_relu
from editgan_core.ops.upfirdn2d import upfirdn2d

__all__ = ["FusedLeakyReLU", "fused_leaky_relu", "requested_impl", "resolve_impl", "upfirdn2d", "use_impl"]
