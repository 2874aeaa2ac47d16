"""StyleGAN2 generator and discriminator (Karras et al. 2020) with rosinality's module names.

Module and parameter names follow rosinality's ``stylegan2-pytorch`` ``model.py``, so its checkpoints
(``{"g_ema": ..., "latent_avg": ...}``; FFHQ/car/cat conversions and the official EditGAN car model) load
with ``strict=True``. Differences that do not touch the state dict: an optional ``channels`` override for small
demo models, the synthesis feature maps EditGAN's segmentation branch reads, and a modulated convolution that
scales activations instead of building per-sample weights when that is cheaper (identical maths).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from editgan_core.models.serialization import ModelMixin, int_keys, register_config
from editgan_core.ops import FusedLeakyReLU, fused_leaky_relu, upfirdn2d

DEFAULT_BLUR = (1, 3, 3, 1)
MEAN_LATENT_SAMPLES = 4096  # z averaged for the truncation centre, as rosinality's generate.py


def config_f_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """Feature-map widths per resolution of the paper's config F."""
    return {
        4: 512, 8: 512, 16: 512, 32: 512,
        64: 256 * channel_multiplier, 128: 128 * channel_multiplier, 256: 64 * channel_multiplier,
        512: 32 * channel_multiplier, 1024: 16 * channel_multiplier,
    }


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """A normalised 2-D FIR kernel; a 1-D list becomes its outer product."""
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """2x upsampling with the blur kernel (used on the RGB skip path)."""

    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class Blur(nn.Module):
    """Low-pass filter around a strided (transposed) convolution against aliasing."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        kernel = make_kernel(kernel)
        if upsample_factor > 1:
            kernel = kernel * upsample_factor**2
        self.register_buffer("kernel", kernel)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with the equalised learning rate: weights stored N(0,1), scaled at run time."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and an optional per-layer lr multiplier."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias, inplace=True)
        return F.linear(x, self.weight * self.scale, bias=bias)


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled by a style, then output channels demodulated.

    ``fused=True`` folds style and demodulation into per-sample weights and runs one grouped
    convolution (rosinality's default, best for batch 1 and on GPUs); ``fused=False`` scales the
    activations instead and shares one weight across the batch, which is faster on CPU for
    batches. Both compute the same function. ``None`` picks by device and batch size.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, downsample: bool = False,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR, fused: bool | None = None) -> None:
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        self.downsample = downsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate
        self.fused = fused

    def extra_repr(self) -> str:
        return (f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, "
                f"upsample={self.upsample}, downsample={self.downsample}")

    def _use_fused(self, x: torch.Tensor, style: torch.Tensor) -> bool:
        if self.fused is not None:
            return self.fused
        if x.device.type != "cpu":
            return True
        # On CPU, modulate whichever is smaller: the weights (fused) or the activations. With frozen
        # weights under autograd (embedding, edits) the fused path would still differentiate its
        # per-sample weights, a second convolution as costly as the forward one; modulating the
        # activations needs only the input gradient.
        if torch.is_grad_enabled() and (x.requires_grad or style.requires_grad) and not self.weight.requires_grad:
            return False
        return x.shape[0] == 1 and self.weight.numel() < 2 * x.numel()

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        style = self.modulation(style)  # (B, in)
        if self.kernel_size == 1 and not (self.upsample or self.downsample):
            return self._forward_1x1(x, style)
        if self._use_fused(x, style):
            return self._forward_fused(x, style)
        weight = self.weight[0] * self.scale  # (out, in, k, k)
        x = x * style.view(batch, -1, 1, 1)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        elif self.downsample:
            out = F.conv2d(self.blur(x), weight, stride=2)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # sum_{i,k} (w_oik * s_bi)^2 = sum_i s_bi^2 * (sum_k w_oik^2)
            demod = torch.rsqrt(style.square() @ weight.square().sum([2, 3]).t() + self.eps)
            out = out * demod.view(batch, -1, 1, 1)
        return self.blur(out) if self.upsample else out

    def _forward_1x1(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """A 1x1 modulated conv (ToRGB) is a batched matrix product; far cheaper than conv2d on CPU."""
        batch, in_channel, height, width = x.shape
        weight = self.scale * self.weight[0, :, :, 0, 0] * style.view(batch, 1, in_channel)  # (B, out, in)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(2, keepdim=True) + self.eps)
        return torch.bmm(weight, x.reshape(batch, in_channel, -1)).view(batch, -1, height, width)

    def _forward_fused(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_channel, height, width = x.shape
        k = self.kernel_size
        weight = self.scale * self.weight * style.view(batch, 1, in_channel, 1, 1)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, k, k)
            out = F.conv_transpose2d(x.reshape(1, batch * in_channel, height, width), weight,
                                     stride=2, groups=batch)
            out = out.view(batch, self.out_channel, out.shape[2], out.shape[3])
            return self.blur(out)
        weight = weight.view(batch * self.out_channel, in_channel, k, k)
        if self.downsample:
            x = self.blur(x)
            height, width = x.shape[2:]
            out = F.conv2d(x.reshape(1, batch * in_channel, height, width), weight, stride=2, groups=batch)
        else:
            out = F.conv2d(x.reshape(1, batch * in_channel, height, width), weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_channel, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    """Per-pixel noise with a learned strength: the stochastic detail of StyleGAN."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor | None = None, inplace: bool = False) -> torch.Tensor:
        if noise is None:
            batch, _, height, width = image.shape
            noise = image.new_empty(batch, 1, height, width).normal_()
        return image.add_(self.weight * noise) if inplace else image + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 tensor the synthesis network starts from."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.input.expand(latent.shape[0], -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv + noise + bias/leaky ReLU: one synthesis layer, one w+ entry."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = DEFAULT_BLUR,
                 demodulate: bool = True, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel, demodulate=demodulate)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel, inplace=True, clamp=conv_clamp)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        # The conv output is fresh and unneeded by its backward, so noise and activation reuse its memory.
        return self.activate(self.noise(self.conv(x, style), noise=noise, inplace=True))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB, added to the upsampled RGB of the previous resolution."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR, conv_clamp: float | None = None) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        out = out if self.conv_clamp is None else out.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


@dataclass
class SynthesisOutput:
    """What ``Generator.synthesis`` returns: the image and, on request, the feature maps."""

    image: torch.Tensor
    features: list[torch.Tensor] | None = None


class Generator(ModelMixin, nn.Module):
    """StyleGAN2 generator: mapping network ``style`` (z -> w) and the synthesis network.

    W+ latents have shape (B, n_latent, style_dim) with ``n_latent = 2 * log2(size) - 2``; entry 0
    drives ``conv1``, entries i, i+1 the two convs at each resolution and entry i+2 its ToRGB.
    ``conv_clamp`` (None: off) clips conv outputs like NVlabs' models trained with it.
    """

    @register_config
    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR, lr_mlp: float = 0.01,
                 channels: Mapping[int, int] | None = None, conv_clamp: float | None = None) -> None:
        super().__init__()
        if size < 4 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 4, got {size}")
        self.size = size
        self.style_dim = style_dim
        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)],
        )
        self.channels = {**config_f_channels(channel_multiplier), **int_keys(channels)}
        ch = self.channels
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel, conv_clamp=conv_clamp)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False, conv_clamp=conv_clamp)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_channel = ch[4]
        for i in range(3, self.log_size + 1):
            out_channel = ch[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel, conv_clamp=conv_clamp))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel,
                                         conv_clamp=conv_clamp))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, conv_clamp=conv_clamp))
            in_channel = out_channel
        self.n_latent = self.log_size * 2 - 2

    # -- latents -------------------------------------------------------------------------------
    def make_noise(self) -> list[torch.Tensor]:
        device = self.input.input.device
        return [torch.randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), device=device)
                for i in range(self.num_layers)]

    def stored_noise(self) -> list[torch.Tensor]:
        """The fixed noise buffers saved with the checkpoint (deterministic renders)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    @torch.no_grad()
    def mean_latent(self, n_latent: int, rng: torch.Generator | None = None) -> torch.Tensor:
        """Average w of ``n_latent`` random z (drawn by ``rng`` when given): the truncation centre, (1, style_dim)."""
        z = torch.randn(n_latent, self.style_dim, generator=rng, device=rng.device if rng else self.input.input.device)
        return self.style(z.to(self.input.input.device)).mean(0, keepdim=True)

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, style_dim) -> w (B, style_dim) through the mapping network."""
        return self.style(z)

    def w_to_wplus(self, w: torch.Tensor) -> torch.Tensor:
        """w (B, style_dim) -> W+ (B, n_latent, style_dim): the same style for every layer."""
        if w.ndim == 3:
            return w
        return w.unsqueeze(1).expand(-1, self.n_latent, -1)

    # -- synthesis -----------------------------------------------------------------------------
    def feature_channels(self) -> list[int]:
        """Widths of the feature maps ``synthesis(return_features=True)`` returns, in order."""
        ch = self.channels
        widths = [ch[4], ch[4]]
        for i in range(3, self.log_size + 1):
            widths += [ch[2**i], ch[2**i]]
        return widths

    def synthesis(self, latent: torch.Tensor, noise: Sequence[torch.Tensor | None] | None = None,
                  return_features: bool = False) -> SynthesisOutput:
        """W+ (B, n_latent, style_dim) -> image (B, 3, size, size) in about [-1, 1].

        With ``return_features`` the feature maps EditGAN's segmentation branch reads come back in
        this order (the official EditGAN order, 6016 channels for config F at 512 px): the 4x4
        constant input, the 4x4 ``conv1`` output, then both styled convs of every resolution from 8
        px up, each after noise and activation.
        """
        if latent.ndim != 3 or latent.shape[1] != self.n_latent or latent.shape[2] != self.style_dim:
            raise ValueError(f"expected a W+ latent of shape (B, {self.n_latent}, {self.style_dim}), "
                             f"got {tuple(latent.shape)}")
        if noise is None:
            noise = [None] * self.num_layers
        out = self.input(latent)
        features = [out] if return_features else None
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        if features is not None:
            features.append(out)
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs, strict=True
        ):
            out = conv1(out, latent[:, i], noise=noise1)
            if features is not None:
                features.append(out)
            out = conv2(out, latent[:, i + 1], noise=noise2)
            if features is not None:
                features.append(out)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return SynthesisOutput(image=skip, features=features)

    def forward(self, styles: Sequence[torch.Tensor], return_latents: bool = False,
                inject_index: int | None = None, truncation: float = 1, truncation_latent: torch.Tensor | None = None,
                input_is_latent: bool = False, noise: Sequence[torch.Tensor | None] | None = None,
                randomize_noise: bool = True, return_features: bool = False):
        """rosinality's interface: ``styles`` is a list of z (or w with ``input_is_latent``) tensors.

        A single (B, n_latent, style_dim) entry with ``input_is_latent`` is a W+ latent; two entries
        mix styles at ``inject_index``. Returns ``(image, latent or None)``, plus the feature list
        as a third element when ``return_features`` is set.
        """
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None and not randomize_noise:
            noise = self.stored_noise()
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) < 2:
            latent = self.w_to_wplus(styles[0])
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            latent = torch.cat([styles[0].unsqueeze(1).expand(-1, inject_index, -1),
                                styles[1].unsqueeze(1).expand(-1, self.n_latent - inject_index, -1)], 1)
        result = self.synthesis(latent, noise=noise, return_features=return_features)
        out = (result.image, latent if return_latents else None)
        return (*out, result.features) if return_features else out


class ConvLayer(nn.Sequential):
    """[Blur] + EqualConv2d + [FusedLeakyReLU]; a Sequential so names match rosinality's (0, 1, 2)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR, bias: bool = True, activate: bool = True,
                 conv_clamp: float | None = None) -> None:
        layers: list[nn.Module] = []
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, padding=padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias, inplace=True, clamp=conv_clamp))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual downsampling block of the discriminator."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = DEFAULT_BLUR,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel, conv_clamp=conv_clamp)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, True, blur_kernel, conv_clamp=conv_clamp)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False, bias=False,
                              blur_kernel=blur_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(ModelMixin, nn.Module):
    """StyleGAN2 residual discriminator with the minibatch standard-deviation layer."""

    @register_config
    def __init__(self, size: int, channel_multiplier: int = 2, blur_kernel: Sequence[float] = DEFAULT_BLUR,
                 channels: Mapping[int, int] | None = None, conv_clamp: float | None = None,
                 stddev_group: int = 4) -> None:
        super().__init__()
        ch = {**config_f_channels(channel_multiplier), **int_keys(channels)}
        self.channels = ch
        convs: list[nn.Module] = [ConvLayer(3, ch[size], 1, conv_clamp=conv_clamp)]
        log_size = int(math.log2(size))
        in_channel = ch[size]
        for i in range(log_size, 2, -1):
            out_channel = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_channel, out_channel, blur_kernel, conv_clamp))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)
        self.stddev_group = stddev_group
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_channel + 1, ch[4], 3, conv_clamp=conv_clamp)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activation="fused_lrelu"),
                                          EqualLinear(ch[4], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        batch, channel, height, width = out.shape
        group = min(batch, self.stddev_group)
        if batch % group:
            group = 1  # the statistic needs equal groups; fall back rather than fail on odd batches
        stddev = out.view(group, -1, self.stddev_feat, channel // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)
        stddev = stddev.repeat(group, 1, height, width)
        out = self.final_conv(torch.cat([out, stddev], 1))
        return self.final_linear(out.view(batch, -1))
