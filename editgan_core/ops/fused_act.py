"""Bias + leaky ReLU + gain, StyleGAN2's activation (rosinality's ``FusedLeakyReLU``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from editgan_core.ops.backend import resolve_impl

DEFAULT_SLOPE = 0.2
DEFAULT_SCALE = math.sqrt(2)


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = DEFAULT_SLOPE,
    scale: float = DEFAULT_SCALE,
    impl: str | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """``leaky_relu(x + bias, slope) * scale`` with ``bias`` broadcast along dim 1.

    ``inplace`` lets the native path overwrite ``x`` (pass it only for a fresh tensor no one else
    needs, such as a convolution's output): no new memory, which is most of the cost at high
    resolution on CPU.
    """
    impl = impl or resolve_impl(x)
    if impl == "cuda":
        from editgan_core.ops import cuda_ext

        return cuda_ext.fused_leaky_relu(x, bias, negative_slope, scale)
    shape = (1, -1, *([1] * (x.ndim - 2)))
    if impl == "ref":
        if bias is not None:
            x = x + bias.view(shape)
        return torch.where(x >= 0, x, x * negative_slope) * scale
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    # scale > 0 commutes with leaky ReLU, so it can be applied before the activation; the activation
    # then runs in place on a tensor that only this function holds (autograd-safe, double backward too).
    if inplace:
        y = x if bias is None else x.add_(bias.view(shape))
        y = y.mul_(scale)
    else:
        y = x * scale if bias is None else torch.add(bias.view(shape) * scale, x, alpha=scale)
    return F.leaky_relu_(y, negative_slope)


class FusedLeakyReLU(nn.Module):
    """Activation with its own per-channel bias; parameter name ``bias`` as in rosinality.

    ``clamp`` clips the result to +-clamp afterwards, as NVlabs' ``bias_act`` does for ``conv_clamp``.
    """

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = DEFAULT_SLOPE,
                 scale: float = DEFAULT_SCALE, inplace: bool = False, clamp: float | None = None) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale
        self.inplace = inplace
        self.clamp = clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = fused_leaky_relu(x, self.bias, self.negative_slope, self.scale, inplace=self.inplace)
        return out if self.clamp is None else out.clamp(-self.clamp, self.clamp)
