"""NVlabs StyleGAN2 networks (as saved module state) -> this project's rosinality-named models.

The maths is the same on both sides, only names and shapes differ: NVlabs' mapping ``fc{i}`` is
``style.{i+1}``, block ``b4`` is ``input``/``conv1``/``to_rgb1``, block ``b{r}`` is ``convs.{2k}``
(the upsampling conv), ``convs.{2k+1}`` and ``to_rgbs.{k}``; ``noise_const`` and ``noise_strength``
become the stored noise buffers and the noise weights, ``w_avg`` the truncation centre. The weights
of upsampling convs need no flip (both sides run a transposed convolution on the unflipped weight
followed by the same blur). Everything the conversion relies on is checked first and anything that
differs (StyleGAN3/StyleGAN-XL networks, conditioning, 'resnet'/'orig' generators, other
activations or filters) is refused by name.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from editgan_core.models.serialization import CheckpointError, load_checked
from editgan_core.models.stylegan2 import DEFAULT_BLUR, Discriminator, Generator, make_kernel

if TYPE_CHECKING:
    from editgan_core.formats.nvlabs import SavedModule

MAX_RESOLUTION = 4096
MAX_WIDTH = 4096
STYLEGAN3_HINT = ("use a StyleGAN2 model (stylegan2-ada-pytorch, or stylegan3's --cfg=stylegan2); StyleGAN3's "
                  "alias-free synthesis network has no StyleGAN2 equivalent, so the studio cannot edit it")


def convert_generator(net: SavedModule) -> tuple[Generator, torch.Tensor | None, dict]:
    """An NVlabs ``Generator`` -> (``Generator`` in eval mode, w_avg (1, w_dim) or None, notes)."""
    _refuse_other_families(net, "generator")
    mapping, synthesis = net.child("mapping"), net.child("synthesis")
    if mapping is None or synthesis is None:
        raise CheckpointError(f"the snapshot's {net.class_name} has no mapping/synthesis networks; "
                              "not a StyleGAN2 generator")
    z_dim, w_dim, c_dim = (_int(net, k) for k in ("z_dim", "w_dim", "c_dim"))
    if c_dim:
        raise CheckpointError(f"the generator is class-conditional (c_dim={c_dim}); the studio edits unconditional "
                              "StyleGAN2 models only. Use an unconditional snapshot (trained without --cond).")
    if z_dim != w_dim:
        raise CheckpointError(f"the mapping network maps z_dim={z_dim} to w_dim={w_dim}; this project's StyleGAN2 "
                              "needs them equal")
    if _int(net, "img_channels") != 3:
        raise CheckpointError(f"the generator makes {net.attr('img_channels')}-channel images; only RGB is supported")
    state, lr_mlp, n_mlp = _convert_mapping(mapping, w_dim)
    blocks, channels, clamp = _synthesis_blocks(synthesis)
    size = max(blocks)
    generator = Generator(size, w_dim, n_mlp, lr_mlp=lr_mlp, channels=channels, conv_clamp=clamp)
    state.update(_convert_synthesis(blocks))
    # The blur kernels are fixed buffers, identical to NVlabs' checked resample filters.
    state.update({k: v for k, v in generator.state_dict().items() if k.endswith("kernel")})
    load_checked(generator, state, "converted NVlabs generator")
    w_avg = mapping.tensor("w_avg")
    notes = {"conv_clamp": clamp, "mapping_lr_multiplier": lr_mlp,
             "num_fp16_res": sum(bool(b.attr("use_fp16")) for b in blocks.values()),
             "w_avg": "the snapshot's own (mapping.w_avg)" if w_avg is not None else "none in the snapshot"}
    if notes["num_fp16_res"]:
        notes["precision"] = "trained with float16 blocks; converted to float32 (renders differ by fp16 rounding)"
    w_avg = None if w_avg is None else w_avg.detach().float().reshape(1, w_dim).clone()
    return generator.eval(), w_avg, notes


def convert_discriminator(net: SavedModule) -> Discriminator:
    """An NVlabs residual ``Discriminator`` -> ``Discriminator`` (eval mode)."""
    _refuse_other_families(net, "discriminator")
    if _int(net, "c_dim"):
        raise CheckpointError(f"the discriminator is class-conditional (c_dim={net.attr('c_dim')}); not converted")
    size = _int(net, "img_resolution")
    _check_resolution(size)
    epilogue = _child(net, "b4")
    if epilogue.attr("architecture") != "resnet" or epilogue.attr("cmap_dim"):
        raise CheckpointError(f"discriminator epilogue architecture {epilogue.attr('architecture')!r}: only "
                              "'resnet' (StyleGAN2 config F) converts")
    mbstd = epilogue.child("mbstd")
    if mbstd is None or mbstd.attr("num_channels") != 1 or not isinstance(mbstd.attr("group_size"), int):
        raise CheckpointError("the discriminator's minibatch-stddev layer is not one channel over a fixed group; "
                              "not converted")
    first = _child(net, f"b{size}")
    clamp = _child(first, "fromrgb").attr("conv_clamp")
    state = {**_conv(_child(first, "fromrgb"), "convs.0.0.weight", "convs.0.1.bias", clamp)}
    channels = {size: _child(first, "fromrgb").tensor("weight").shape[0]}
    for k, res in enumerate(2**i for i in range(int(math.log2(size)), 2, -1)):
        block = _child(net, f"b{res}")
        if block.attr("architecture") != "resnet" or (k and block.child("fromrgb") is not None):
            raise CheckpointError(f"discriminator block b{res} has architecture {block.attr('architecture')!r}: "
                                  "only 'resnet' converts")
        _check_filter(block, f"discriminator block b{res}")
        prefix = f"convs.{k + 1}"
        state.update(_conv(_child(block, "conv0"), f"{prefix}.conv1.0.weight", f"{prefix}.conv1.1.bias", clamp))
        state.update(_conv(_child(block, "conv1"), f"{prefix}.conv2.1.weight", f"{prefix}.conv2.2.bias", clamp))
        state.update(_conv(_child(block, "skip"), f"{prefix}.skip.1.weight", None, None))
        channels[res // 2] = state[f"{prefix}.conv2.1.weight"].shape[0]
    state.update(_conv(_child(epilogue, "conv"), "final_conv.0.weight", "final_conv.1.bias", clamp))
    for i, (name, activation) in enumerate((("fc", "lrelu"), ("out", "linear"))):
        state.update(_linear(_child(epilogue, name), f"final_linear.{i}", lr_mul=1.0, activation=activation))
    discriminator = Discriminator(size, channels=channels, conv_clamp=clamp, stddev_group=mbstd.attr("group_size"))
    state.update({k: v for k, v in discriminator.state_dict().items() if k.endswith("kernel")})
    load_checked(discriminator, state, "converted NVlabs discriminator")
    return discriminator.eval()


# -- checks -------------------------------------------------------------------------------------------
def _refuse_other_families(net: SavedModule, role: str) -> None:
    source = net.module_src
    if net.class_name.startswith("Superres") or "pg_modules" in source or "stylegan3_resetting" in source:
        raise CheckpointError(f"the snapshot's {role} is StyleGAN-XL ({net.class_name}); the studio edits StyleGAN2 "
                              "only and StyleGAN-XL's networks have no StyleGAN2 equivalent")
    synthesis = net.child("synthesis")
    if "class SynthesisInput" in source or (synthesis is not None and synthesis.child("input") is not None):
        raise CheckpointError(f"the snapshot's {role} is StyleGAN3 (alias-free; found SynthesisInput); "
                              f"{STYLEGAN3_HINT}")
    expected = "Generator" if role == "generator" else "Discriminator"
    if net.class_name != expected:
        raise CheckpointError(f"the snapshot's {role} is a {net.class_name!r}, expected NVlabs' {expected!r}")


def _int(net: SavedModule, name: str) -> int:
    value = net.attr(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_WIDTH:
        raise CheckpointError(f"the snapshot's {net.class_name}.{name} is {value!r}, expected a small integer")
    return value


def _child(net: SavedModule, name: str) -> SavedModule:
    child = net.child(name)
    if child is None:
        raise CheckpointError(f"the snapshot's {net.class_name} has no '{name}' layer; not a StyleGAN2 network")
    return child


def _tensor(net: SavedModule, name: str, ndim: int) -> torch.Tensor:
    value = net.tensor(name)
    if value is None or value.ndim != ndim or not value.is_floating_point():
        raise CheckpointError(f"the snapshot's {net.class_name} has no {ndim}-d float tensor '{name}'")
    return value.detach().float()


def _check_resolution(size: int) -> None:
    if size < 4 or size & (size - 1) or size > MAX_RESOLUTION:
        raise CheckpointError(f"resolution {size} is not a power of two between 4 and {MAX_RESOLUTION}")


def _check_filter(block: SavedModule, what: str) -> None:
    found = block.tensor("resample_filter")
    if found is None or found.shape != (4, 4) or not torch.allclose(found.float(), make_kernel(DEFAULT_BLUR)):
        raise CheckpointError(f"{what} uses a resample filter other than [1, 3, 3, 1]; not converted")


def _check_layer(layer: SavedModule, what: str, clamp: float | None) -> None:
    if layer.attr("activation", "lrelu") != "lrelu":
        raise CheckpointError(f"{what} uses activation {layer.attr('activation')!r}; only 'lrelu' converts")
    if layer.attr("conv_clamp") != clamp:
        raise CheckpointError(f"{what} has conv_clamp {layer.attr('conv_clamp')!r}, other layers {clamp!r}; "
                              "mixed clamps do not convert")


# -- mapping and synthesis ------------------------------------------------------------------------------
def _convert_mapping(mapping: SavedModule, w_dim: int) -> tuple[dict[str, torch.Tensor], float, int]:
    if mapping.child("embed") is not None:
        raise CheckpointError("the mapping network embeds class labels; conditional models are not supported")
    n_mlp = _int(mapping, "num_layers")
    lr_mlp = mapping.child("fc0").attr("bias_gain") if mapping.child("fc0") is not None else None
    if not isinstance(lr_mlp, (int, float)) or not 0 < lr_mlp <= 1:
        raise CheckpointError(f"cannot read the mapping network's learning-rate multiplier (found {lr_mlp!r})")
    state = {}
    for i in range(n_mlp):
        state.update(_linear(_child(mapping, f"fc{i}"), f"style.{i + 1}", lr_mul=lr_mlp, activation="lrelu"))
        if state[f"style.{i + 1}.weight"].shape != (w_dim, w_dim):
            raise CheckpointError(f"mapping layer fc{i} is {tuple(state[f'style.{i + 1}.weight'].shape)}; this "
                                  f"project's mapping needs {w_dim}x{w_dim} layers")
    return state, float(lr_mlp), n_mlp


def _synthesis_blocks(synthesis: SavedModule) -> tuple[dict[int, SavedModule], dict[int, int], float | None]:
    size = _int(synthesis, "img_resolution")
    _check_resolution(size)
    blocks = {2**i: _child(synthesis, f"b{2**i}") for i in range(2, int(math.log2(size)) + 1)}
    clamp = blocks[4].child("conv1").attr("conv_clamp") if blocks[4].child("conv1") is not None else None
    if clamp is not None and not (isinstance(clamp, (int, float)) and clamp > 0):
        raise CheckpointError(f"conv_clamp is {clamp!r}; expected a positive number or None")
    channels = {}
    for res, block in blocks.items():
        if block.attr("architecture") != "skip":
            raise CheckpointError(f"synthesis block b{res} has architecture {block.attr('architecture')!r}; only "
                                  "'skip' (StyleGAN2 config F, NVlabs' default) has a rosinality equivalent, so "
                                  "the studio cannot edit this model")
        _check_filter(block, f"synthesis block b{res}")
        for name in ("conv0", "conv1") if res > 4 else ("conv1",):
            _check_layer(_child(block, name), f"synthesis layer b{res}.{name}", clamp)
        if _child(block, "torgb").attr("conv_clamp") != clamp:
            raise CheckpointError(f"b{res}.torgb's conv_clamp differs from the convs'; not converted")
        channels[res] = _tensor(_child(block, "conv1"), "weight", 4).shape[0]
    return blocks, channels, None if clamp is None else float(clamp)


def _convert_synthesis(blocks: dict[int, SavedModule]) -> dict[str, torch.Tensor]:
    b4 = blocks[4]
    state = {"input.input": _tensor(b4, "const", 3).unsqueeze(0)}
    state.update(_styled(_child(b4, "conv1"), "conv1", "noises.noise_0"))
    state.update(_to_rgb(_child(b4, "torgb"), "to_rgb1"))
    for k, res in enumerate(r for r in blocks if r > 4):
        block = blocks[res]
        state.update(_styled(_child(block, "conv0"), f"convs.{2 * k}", f"noises.noise_{2 * k + 1}"))
        state.update(_styled(_child(block, "conv1"), f"convs.{2 * k + 1}", f"noises.noise_{2 * k + 2}"))
        state.update(_to_rgb(_child(block, "torgb"), f"to_rgbs.{k}"))
    return state


def _styled(layer: SavedModule, prefix: str, noise_key: str) -> dict[str, torch.Tensor]:
    """SynthesisLayer -> StyledConv; a layer without noise gets strength 0 (what use_noise=False renders)."""
    weight = _tensor(layer, "weight", 4)
    if weight.shape[-2:] != (3, 3):
        raise CheckpointError(f"synthesis layer {prefix} has a {tuple(weight.shape[-2:])} kernel; StyleGAN2 uses 3x3")
    res = _int(layer, "resolution")
    if layer.attr("use_noise", True):
        noise, strength = _tensor(layer, "noise_const", 2), _tensor(layer, "noise_strength", 0)
    else:
        noise, strength = torch.zeros(res, res), torch.zeros(())
    return {f"{prefix}.conv.weight": weight.unsqueeze(0), f"{prefix}.noise.weight": strength.reshape(1),
            f"{prefix}.activate.bias": _tensor(layer, "bias", 1), noise_key: noise.reshape(1, 1, *noise.shape),
            **_linear(_child(layer, "affine"), f"{prefix}.conv.modulation")}


def _to_rgb(layer: SavedModule, prefix: str) -> dict[str, torch.Tensor]:
    weight = _tensor(layer, "weight", 4)
    if weight.shape[0] != 3 or weight.shape[-2:] != (1, 1):
        raise CheckpointError(f"{prefix}: ToRGB weight {tuple(weight.shape)} is not a 1x1 conv to RGB")
    bias = _tensor(layer, "bias", 1).reshape(1, 3, 1, 1)
    return {f"{prefix}.conv.weight": weight.unsqueeze(0), f"{prefix}.bias": bias,
            **_linear(_child(layer, "affine"), f"{prefix}.conv.modulation")}


def _linear(layer: SavedModule, prefix: str, lr_mul: float = 1.0,
            activation: str = "linear") -> dict[str, torch.Tensor]:
    """FullyConnectedLayer -> EqualLinear: both store weight/lr_mul and scale by lr_mul/sqrt(in) at run time."""
    if layer.attr("bias_gain", lr_mul) != lr_mul:
        raise CheckpointError(f"{prefix}: learning-rate multiplier {layer.attr('bias_gain')!r}, expected {lr_mul}")
    if layer.attr("activation") != activation:
        raise CheckpointError(f"{prefix}: activation {layer.attr('activation')!r}, expected {activation!r}")
    weight = _tensor(layer, "weight", 2)
    bias = layer.tensor("bias")
    if bias is None:
        raise CheckpointError(f"{prefix}: a fully connected layer without bias does not convert")
    return {f"{prefix}.weight": weight, f"{prefix}.bias": bias.detach().float()}


def _conv(layer: SavedModule, weight_key: str, bias_key: str | None, clamp: float | None) -> dict[str, torch.Tensor]:
    """Conv2dLayer -> EqualConv2d (+ FusedLeakyReLU bias); NVlabs' gain 1/sqrt(fan_in) is EqualConv2d's scale."""
    if bias_key is not None:
        _check_layer(layer, weight_key.rsplit(".", 2)[0], clamp)
    state = {weight_key: _tensor(layer, "weight", 4)}
    if bias_key is not None:
        state[bias_key] = _tensor(layer, "bias", 1)
    elif layer.tensor("bias") is not None:
        raise CheckpointError(f"{weight_key}: the residual skip conv has a bias; not converted")
    return state
