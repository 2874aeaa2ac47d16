"""Loading generator checkpoints safely and with errors a user can act on.

Checkpoints are read with ``torch.load(weights_only=True)`` (no code execution), safetensors, or for
NVlabs snapshot pickles a restricted unpickler (``editgan_core.formats``); the format is told by the
file's content, not its name. A shape or key mismatch names the first offending keys with expected
vs found shapes instead of PyTorch's wall of text.
"""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from editgan_core.models.serialization import CONFIG_KEY, CheckpointError, load_checked, read_safetensors
from editgan_core.models.stylegan2 import Discriminator, Generator

# Far above any StyleGAN2 snapshot (an FFHQ 1024 NVlabs pickle with G, D and G_ema is ~380 MB).
MAX_CHECKPOINT_BYTES = 4 << 30
ACCEPTED_FORMATS = ("NVlabs stylegan2-ada-pytorch .pkl snapshots, rosinality .pt checkpoints (converted or train.py) "
                    "and this project's .safetensors")
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own limit
# torch.save's legacy (pre-zip) files open with this number pickled as a 10-byte long.
TORCH_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


class GeneratorNotFoundError(CheckpointError, FileNotFoundError):
    """No generator file where one was expected."""


GENERATOR_FILES = ("generator_ema.safetensors", "generator.safetensors")


@dataclass
class ImportedCheckpoint:
    """A generator read from any accepted format, with what else the file held.

    ``w_avg`` (1, style_dim) is the file's average w, or for rosinality ``train.py`` checkpoints one
    computed from the mapping (see ``metadata["w_avg"]``); ``discriminator`` is set when the file has
    one that converts, so training can continue from it.
    """

    generator: Generator
    w_avg: torch.Tensor | None
    source_format: str
    discriminator: Discriminator | None = None
    metadata: dict = field(default_factory=dict)


def read_torch_file(path: str | Path) -> dict:
    """``torch.load`` that refuses pickles needing code execution, with a clear message.

    Besides tensors and containers only ``argparse.Namespace`` is allowed: rosinality's ``train.py``
    stores its arguments as one, and it rebuilds as plain attributes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise CheckpointError(
            f"{path.name} is a pickle that needs code execution to load"
            + (f" (it asks for {found.group(1)})" if found else "") + "; refused for safety. "
            "Re-save it as a plain state dict (or safetensors) in a trusted environment."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path.name} holds a {type(obj).__name__}, expected a dict of tensors")
    return obj


def infer_generator_config(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Architecture of a rosinality-format generator read off its keys and shapes."""
    try:
        n_mlp = max(int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
        style_dim = state_dict["style.1.weight"].shape[1]
        num_layers = sum(1 for k in state_dict if k.startswith("noises.noise_"))
        log_size = (num_layers - 1) // 2 + 2
        channels = {4: state_dict["conv1.conv.weight"].shape[1]}
        for i in range(3, log_size + 1):
            channels[2**i] = state_dict[f"convs.{2 * (i - 3)}.conv.weight"].shape[1]
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"not a rosinality StyleGAN2 generator state dict (cannot read {exc})") from exc
    return {"size": 2**log_size, "style_dim": style_dim, "n_mlp": n_mlp, "channels": channels}


def load_rosinality_generator(source: str | Path | Mapping, *, key: str = "g_ema", lr_mlp: float = 0.01,
                              expect: Mapping | None = None) -> tuple[Generator, torch.Tensor | None]:
    """Build a ``Generator`` from a rosinality checkpoint (path or loaded dict).

    Returns the generator (eval mode) and its ``latent_avg`` when the file has one. ``expect``
    (e.g. ``{"size": 512}``) turns a silent architecture surprise into an error.
    """
    ckpt = read_torch_file(source) if isinstance(source, (str, Path)) else dict(source)
    if key in ckpt:
        state_dict = ckpt[key]
    elif "style.1.weight" in ckpt:
        state_dict = ckpt
    else:
        raise CheckpointError(f"checkpoint has no '{key}' entry; top-level keys: {sorted(ckpt)[:10]}")
    config = infer_generator_config(state_dict)
    for name, value in (expect or {}).items():
        if config.get(name) != value:
            raise CheckpointError(f"checkpoint has {name}={config.get(name)}, expected {value}")
    generator = Generator(lr_mlp=lr_mlp, **config)
    load_checked(generator, state_dict, "generator checkpoint")
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        latent_avg = latent_avg.reshape(1, -1).float()
    return generator.eval(), latent_avg


def resolve_generator_file(source: str | Path) -> Path:
    """The generator file itself, or the one a run/bundle folder holds."""
    path = Path(source)
    if path.is_dir():
        found = [path / name for name in GENERATOR_FILES if (path / name).is_file()]
        if not found:
            raise GeneratorNotFoundError(f"no {' or '.join(GENERATOR_FILES)} in {path}")
        path = found[0]
    if not path.is_file():
        raise GeneratorNotFoundError(f"generator not found: {path}")
    return path


def detect_format(path: Path) -> str:
    """``"safetensors"``, ``"torch"`` (zip or legacy torch.save) or ``"pickle"``, read off the first bytes."""
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path.name} is {size / 2**30:.1f} GiB, more than any StyleGAN2 checkpoint "
                              f"({MAX_CHECKPOINT_BYTES / 2**30:.0f} GiB accepted); is it the right file?")
    with path.open("rb") as f:
        head = f.read(16)
        f.seek(max(0, size - (1 << 16) - 22))
        tail = f.read()
    if not head:
        raise CheckpointError(f"{path.name} is empty (0 bytes); download or copy it again")
    # safetensors: an 8-byte little-endian header length, then the JSON header.
    header_len = int.from_bytes(head[:8], "little") if head[8:9] == b"{" else 0
    if 1 < header_len <= size - 8:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        if b"PK\x05\x06" not in tail:
            raise CheckpointError(f"{path.name} is a truncated zip/PyTorch archive ({size} bytes, no end of central "
                                  "directory); download or copy it again")
        return "torch"
    if head[:1] == b"\x80" and 2 <= head[1] <= 5:
        return "torch" if head[2:14] == TORCH_LEGACY_MAGIC else "pickle"
    if 1 < header_len < SAFETENSORS_MAX_HEADER:
        raise CheckpointError(f"{path.name} is a truncated safetensors file: its header alone needs "
                              f"{header_len + 8} bytes, the file has {size}; download or copy it again")
    raise CheckpointError(f"{path.name} is not a checkpoint format this studio reads (it starts with "
                          f"{head[:8]!r}). Accepted: {ACCEPTED_FORMATS}.")


def import_checkpoint(source: str | Path) -> ImportedCheckpoint:
    """Read a generator (and its discriminator where the file has one) from any accepted format."""
    path = resolve_generator_file(source)
    kind = detect_format(path)
    if kind == "safetensors":
        generator, latent_avg = _load_safetensors_generator(path)
        return ImportedCheckpoint(generator, latent_avg, "safetensors")
    if kind == "pickle":
        from editgan_core.formats.nvlabs import import_snapshot

        return import_snapshot(path)
    ckpt = read_torch_file(path)
    from editgan_core.formats.rosinality import import_rosinality

    return import_rosinality(ckpt, path.name)


def load_generator(source: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, torch.Tensor | None]:
    """A frozen, eval-mode generator and its average w (None if the file has none and none is computed).

    ``source`` may be a run or bundle folder holding ``generator_ema.safetensors`` or ``generator.safetensors``
    (config from the file's "config" metadata, or read off the tensor shapes where it has none), such a
    safetensors file itself, a rosinality ``.pt`` checkpoint (``{"g_ema", "latent_avg"}`` or a ``train.py``
    checkpoint) or an NVlabs stylegan2-ada-pytorch ``.pkl`` snapshot; see ``import_checkpoint``.
    """
    imported = import_checkpoint(source)
    generator = imported.generator.to(device).eval().requires_grad_(False)
    return generator, None if imported.w_avg is None else imported.w_avg.to(device)


def _load_safetensors_generator(path: Path) -> tuple[Generator, torch.Tensor | None]:
    """``Generator.load``, also for files without a "config" (read off the shapes) or with a ``latent_avg``."""
    state, metadata = read_safetensors(path)
    latent_avg = state.pop("latent_avg", None)
    config = Generator.config_in(metadata, path.name) if CONFIG_KEY in metadata else infer_generator_config(state)
    generator = Generator.from_state(config, state, path.name)
    return generator, None if latent_avg is None else latent_avg.reshape(1, -1).float()
