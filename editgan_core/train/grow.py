"""Grow a trained StyleGAN2 to a higher resolution: copy what carries over, start the new layers neutral.

Training a 128-px model from scratch on a CPU is out of reach, but most of a 128-px StyleGAN2 is a 64-px
one: the mapping network, the constant, every synthesis layer and ToRGB up to 64 px, and the
discriminator's blocks from 64 px down. Growing copies those (the idea of Karras et al. 2018,
progressive growing, without the fade-in: the skip generator's output is the sum of its ToRGB outputs,
so a new ToRGB that starts near zero makes the grown generator draw the small model's image upsampled,
and training fades the new layer in by itself). The new synthesis convs keep their random init and are
reached through that small ToRGB from the first step. The discriminator's new from-RGB layer and its
blocks above the old resolution start at init; its old blocks move down the ``convs`` list.
``train.gan --freeze-grown`` can hold the copied generator layers fixed (``hold``).

The co-trained encoder of ``train.gan --recon`` carries over too (``grow_encoder``): it reads its
inputs resized to its own size, and its W+ gets the new layers' entries, started as copies of the finest
style it predicted, since the grown generator's old layers still take the same styles.

A grown bundle whose layers were held can take the small bundle's editing vectors again whenever they improve:

    python -m editgan_core.train.grow --vectors-from checkpoints/faces64 --bundle checkpoints/faces128
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from editgan_core.bundle import Bundle, BundleError
from editgan_core.cli_common import command_parser, parse_command
from editgan_core.models.encoder import Encoder
from editgan_core.models.serialization import CheckpointError
from editgan_core.models.stylegan2 import Discriminator, Generator
from editgan_core.vectors.fileformat import load_vector, save_vector
from editgan_core.vectors.vector import EditVector, VectorError

NEW_RGB_GAIN = 1e-2  # the new ToRGB weights' scale: near zero, yet gradients reach the new convs at once


def growth_steps(small_size: int, size: int) -> int:
    """How many resolution doublings lead from ``small_size`` to ``size`` (at least one)."""
    steps = math.log2(size / small_size)
    if steps < 1 or steps != int(steps):
        raise CheckpointError(f"cannot grow a {small_size}-px model to {size} px: the sizes must differ by a "
                              f"power of two, the new one larger")
    return int(steps)


def _copy_matching(target: torch.nn.Module, source: Mapping[str, torch.Tensor], rename: Mapping[str, str],
                   what: str) -> list[str]:
    """Copy ``source[k]`` into ``target``'s tensor ``rename.get(k, k)``; every source tensor must fit."""
    own = target.state_dict()
    problems = []
    copied = []
    for key, value in source.items():
        name = rename.get(key, key)
        if name not in own:
            problems.append(f"{key}: no {name} in the grown model")
        elif own[name].shape != value.shape:
            problems.append(f"{key}: {tuple(value.shape)} against {tuple(own[name].shape)}")
        else:
            copied.append(name)
    if problems:
        raise CheckpointError(f"the {what} cannot be grown into this architecture (widths must match up to the "
                              f"old resolution): " + "; ".join(problems[:5]))
    with torch.no_grad():
        for key, value in source.items():
            own[rename.get(key, key)].copy_(value)
    return copied


def grow_generator(generator: Generator, small: Mapping[str, torch.Tensor]) -> list[str]:
    """Load a smaller generator's weights into ``generator`` and quieten its new ToRGB layers.

    Module names do not depend on the resolution (``convs.i``, ``to_rgbs.i`` and ``noises.noise_i``
    count from 4 px up), so every small tensor has its namesake. Returns the names copied.
    """
    copied = _copy_matching(generator, small, {}, "generator")
    with torch.no_grad():
        for name, param in generator.named_parameters():
            if name.startswith("to_rgbs.") and name.endswith(".conv.weight") and name not in copied:
                param.mul_(NEW_RGB_GAIN)
    return copied


def grow_discriminator(discriminator: Discriminator, small: Mapping[str, torch.Tensor], steps: int) -> list[str]:
    """Load a smaller discriminator's blocks into ``discriminator``, ``steps`` places further down.

    ``convs.0`` is the from-RGB layer at the input resolution and ``convs.i`` the residual block from
    ``size / 2**(i-1)`` px down, so the small model's block i is the grown one's block i + steps; its
    from-RGB layer reads another resolution and is left out, as are the new blocks (they keep their init).
    """
    rename = {}
    kept = {}
    for key, value in small.items():
        parts = key.split(".")
        if parts[0] == "convs":
            if parts[1] == "0":
                continue
            rename[key] = ".".join(["convs", str(int(parts[1]) + steps), *parts[2:]])
        kept[key] = value
    return _copy_matching(discriminator, kept, rename, "discriminator")


def grow_models(generator: Generator, discriminator: Discriminator, g_state: Mapping[str, torch.Tensor],
                d_state: Mapping[str, torch.Tensor], small_size: int) -> list[str]:
    """Grow a smaller model's G and D into ``generator`` and ``discriminator``; returns the G names copied."""
    grow_discriminator(discriminator, d_state, growth_steps(small_size, generator.size))
    return grow_generator(generator, g_state)


def hold(generator: Generator, names: list[str]) -> None:
    """Take the named (copied) parameters out of training, so only the new layers learn.

    A grown run's new discriminator layers start at chance, and while they do, the gradients they send
    drift the copied layers away from what the small model had learned; holding those layers keeps the
    small model's faces (and its W space: its encoder and editing vectors still apply) while the new
    layers learn the finer detail.
    """
    held = set(names)
    for name, param in generator.named_parameters():
        if name in held:
            param.requires_grad_(False)


def path_styles(generator: Generator, z: list[torch.Tensor]) -> tuple[list[torch.Tensor], bool]:
    """The path-length regulariser's inputs: ``z`` as is, or, while the mapping is held, its w (with grad).

    The regulariser differentiates the image by the latents; a held mapping network gives latents no
    gradient, so they are mapped here and handed to the synthesis as leaves (``input_is_latent``).
    """
    if any(p.requires_grad for p in generator.style.parameters()):
        return z, False
    with torch.no_grad():
        return [generator.style(s).requires_grad_() for s in z], True


def grow_encoder(encoder: Encoder, n_latent: int) -> Encoder:
    """An encoder for a grown generator's longer W+: the same network, its last head predicting more styles.

    The added entries start as copies of the last one (the finest style the encoder predicted); a head
    the longer W+ adds outright (a new pyramid level) starts at zero, i.e. at the average latent.
    """
    if n_latent < encoder.n_latent:
        raise ValueError(f"an encoder for {encoder.n_latent} styles cannot be grown to {n_latent}")
    grown = Encoder(**{**encoder.config, "n_latent": n_latent}).to(encoder.w_avg.device)
    own = grown.state_dict()
    with torch.no_grad():
        for key, value in encoder.state_dict().items():
            if own[key].shape == value.shape:
                own[key].copy_(value)
            else:  # a head's final linear (and bias): rows = count * style_dim
                rows = value.shape[0]
                own[key][:rows].copy_(value)
                last = value[rows - encoder.style_dim:]
                extra = (own[key].shape[0] - rows) // encoder.style_dim
                own[key][rows:].copy_(last.repeat(extra, *([1] * (value.ndim - 1))))
    return grown.train(encoder.training)


def moved_tensors(small: Generator, large: Generator) -> list[str]:
    """The small generator's tensors that the grown one no longer holds exactly (empty: its layers were held)."""
    own = large.state_dict()
    return [k for k, v in small.state_dict().items() if k not in own or not torch.equal(own[k], v)]


def carry_vectors(small: Generator, small_vectors: Path, small_id: str, large: Generator, out: Path,
                  bundle_id: str) -> list[Path]:
    """Give a grown generator the small one's editing vectors, with zero rows for the new layers' styles.

    Only sound when the growth held every copied layer (``train.gan --freeze-grown inf``): W and the
    first rows of W+ then drive exactly what they drove before, so a vector still makes its edit and the
    new layers redraw its finer detail. Anything else is refused, naming the tensors that moved. A carried
    vector keeps the date it was made, and a vector the grown bundle already holds is not written again.
    """
    moved = moved_tensors(small, large)
    if moved:
        raise CheckpointError(f"the grown generator changed {len(moved)} of the small one's tensors (e.g. "
                              f"{', '.join(moved[:3])}): its W space is not the small model's, learn new vectors")
    carried = {}  # every vector is read before any is written: a bad file changes nothing
    for path in sorted(small_vectors.glob("*.safetensors")):
        vector = load_vector(path, expect_bundle_id=small_id, expect_shape=(small.n_latent, small.style_dim))
        delta = torch.zeros(large.n_latent, large.style_dim)
        delta[: small.n_latent] = vector.delta
        carried[path.name] = EditVector(delta=delta, name=vector.name, description=vector.description,
                                        bundle_id=bundle_id, class_ids=vector.class_ids,
                                        default_scale=vector.default_scale, created=vector.created,
                                        source=vector.source, extra={**vector.extra, "carried_from": small_id})
    for name, vector in carried.items():
        if not _holds(out / name, vector):
            save_vector(vector, out / name)
    return [out / name for name in carried]


def _holds(path: Path, vector: EditVector) -> bool:
    """Whether ``path`` already holds ``vector``: then it is left as it is (safetensors does not write its
    metadata in a fixed order, so rewriting an unchanged vector would still change the file)."""
    try:
        held = load_vector(path, expect_bundle_id=vector.bundle_id, expect_shape=vector.latent_shape)
    except (OSError, VectorError):
        return False
    return held.metadata() == vector.metadata() and torch.equal(held.delta, vector.delta)


def carry_bundle_vectors(small: Bundle, large: Bundle) -> list[Path]:
    """``carry_vectors`` from one bundle's vectors folder to its grown copy's."""
    return carry_vectors(small.load_generator(), small.vectors_dir, small.id, large.load_generator(),
                         large.vectors_dir, large.id)


def main(argv: Sequence[str] | None = None) -> int:
    p = command_parser(__doc__)
    p.add_argument("--vectors-from", required=True, metavar="SMALL", help="the bundle the grown one was grown from")
    p.add_argument("--bundle", required=True, help="the grown bundle: its vectors of the same names are replaced")
    args = parse_command(p, argv)
    try:
        small, large = Bundle.load(args.vectors_from, hub=False), Bundle.load(args.bundle, hub=False)
        carried = carry_bundle_vectors(small, large)
    except (BundleError, CheckpointError, VectorError) as exc:  # unreadable bundle, moved layers, bad vector file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    large.write_model_card()  # the card lists the vectors
    print(f"{len(carried)} vectors carried over from {small.id} to {large.id}: {', '.join(f.stem for f in carried)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
