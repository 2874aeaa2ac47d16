"""rosinality ``stylegan2-pytorch`` checkpoints: converted ``{"g_ema", "latent_avg"}`` files and ``train.py`` ones.

``train.py`` saves ``g``, ``d``, ``g_ema``, both optimisers, its ``argparse.Namespace`` and ``ada_aug_p`` but
no average latent, so one is computed from the mapping network with a fixed seed (the same w every time
the file is opened). The discriminator comes along when the file has one, so training can continue.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping

import torch

from editgan_core.models.checkpoint import ImportedCheckpoint, load_rosinality_generator
from editgan_core.models.serialization import CheckpointError, load_checked
from editgan_core.models.stylegan2 import MEAN_LATENT_SAMPLES, Discriminator

# rosinality's generate.py and projector.py average 4096 mapped z for the truncation centre; so do we.
MEAN_LATENT_SEED = 0
TRAINPY_KEYS = ("g", "d", "g_optim", "d_optim", "args")


def import_rosinality(ckpt: Mapping, name: str) -> ImportedCheckpoint:
    """A rosinality checkpoint already read with ``weights_only=True`` (``name`` is for messages)."""
    generator, latent_avg = load_rosinality_generator(ckpt)
    if not any(k in ckpt for k in TRAINPY_KEYS):
        return ImportedCheckpoint(generator, latent_avg, "rosinality")
    metadata = {"args": _plain_args(ckpt.get("args"))}
    if latent_avg is None:
        with torch.no_grad():
            latent_avg = generator.mean_latent(MEAN_LATENT_SAMPLES, torch.Generator().manual_seed(MEAN_LATENT_SEED))
        metadata["w_avg"] = f"computed: mean of {MEAN_LATENT_SAMPLES} mapped z (seed {MEAN_LATENT_SEED})"
    if isinstance(ckpt.get("ada_aug_p"), (int, float)):
        metadata["ada_aug_p"] = float(ckpt["ada_aug_p"])
    discriminator = None
    if ckpt.get("d"):
        discriminator = load_rosinality_discriminator(ckpt["d"], f"{name}['d']")
    return ImportedCheckpoint(generator, latent_avg, "rosinality-train.py", discriminator, metadata)


def load_rosinality_discriminator(state_dict: Mapping[str, torch.Tensor], what: str) -> Discriminator:
    """A ``Discriminator`` from a rosinality state dict, its size and widths read off the shapes."""
    try:
        blocks = sorted({int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"convs\.(\d+)\.conv1\..*", k))})
        size = 2 ** (len(blocks) + 2)
        channels = {size: state_dict["convs.0.0.weight"].shape[0], 4: state_dict["final_conv.0.weight"].shape[0]}
        for i in blocks:
            channels[size >> i] = state_dict[f"convs.{i}.conv2.1.weight"].shape[0]
    except (KeyError, AttributeError) as exc:
        raise CheckpointError(f"{what} is not a rosinality StyleGAN2 discriminator (cannot read {exc})") from exc
    discriminator = Discriminator(size, channels=channels)
    load_checked(discriminator, state_dict, what)
    return discriminator.eval()


def _plain_args(args: object) -> dict:
    """train.py's arguments as JSON-safe values (anything else is dropped)."""
    if not isinstance(args, argparse.Namespace):
        return {}
    return {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool)) or v is None}
