"""Edits kept as examples of a preset: (W+ latent, painted label map) pairs, stored per preset name.

A user who paints the same kind of change on several pictures ("add this edit to a preset") collects
pairs; ``editgan_core.train.preset_pairs`` learns one shared vector from them. This works for any
bundle with a segmenter, unlike the scripted presets of a procedural domain.

Layout: ``<pairs root>/<preset name>/NNN.latent.safetensors`` (the latent file format of
``editgan_core.latents``, which records the bundle id and latent shape) beside ``NNN.labels.png``
(class ids as grey values). The latent file is written last, so a pair counts once both exist. The
pairs root is ``<bundle>/preset_pairs`` where the bundle can keep user files, else
``$EDITGAN_HOME/preset_pairs/<bundle>`` (the rules of ``editgan_core.vectors.location``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import filelock
import numpy as np
import torch
from PIL import Image

from editgan_core.bundle import Bundle
from editgan_core.latents import SUFFIX as LATENT_SUFFIX
from editgan_core.latents import LatentError, LatentFile, load_latent, save_latent
from editgan_core.utils import atomic_write
from editgan_core.vectors import VectorError, sanitize_name, utc_now
from editgan_core.vectors.location import bundle_user_dir
from editgan_core.vectors.vector import name_key

PAIRS_DIR = "preset_pairs"
LABELS_SUFFIX = ".labels.png"
MAX_PAIRS = 256  # per preset: a shared vector learns from all of them at once, in memory
MAX_LABEL_FILE_BYTES = 16 * 1024 * 1024
LOCK_TIMEOUT_S = 30.0
_INDEX = re.compile(r"^(\d{3,})$")


class PairError(ValueError):
    """A pair or preset that cannot be stored or used; the message is meant for the user."""


@dataclass
class PresetPair:
    """One example of a preset: the picture's latent and the label map the user painted on it."""

    latent: torch.Tensor  # (1, n_latent, style_dim) float32
    labels: np.ndarray  # (H, W) uint8 class ids
    name: str  # the file stem, e.g. "003", for messages


def pairs_root(bundle: Bundle) -> Path:
    """Where this bundle's preset pairs live: inside the bundle, or under ``EDITGAN_HOME`` by the same rules
    as the user's vectors."""
    return bundle_user_dir(bundle.id, bundle.root, bundle.root / PAIRS_DIR, PAIRS_DIR)


def preset_folder(bundle: Bundle, name: str) -> Path:
    """The folder of preset ``name``; names follow the vector naming rules (the preset becomes a vector), so
    "Wide grin" and "wide grin" are one preset, kept in the folder of its first spelling."""
    try:
        clean = sanitize_name(name)
    except VectorError as exc:
        raise PairError(str(exc)) from exc
    root = pairs_root(bundle)
    if root.is_dir():
        same = [p for p in root.iterdir() if p.is_dir() and name_key(p.name) == name_key(clean)]
        if same:
            return same[0]
    return root / clean


def _pair_stems(folder: Path) -> list[str]:
    """Complete pairs (latent and labels both there), in order."""
    if not folder.is_dir():
        return []
    stems = []
    for path in folder.glob(f"*{LATENT_SUFFIX}"):
        stem = path.name.removesuffix(LATENT_SUFFIX)
        if _INDEX.match(stem) and (folder / f"{stem}{LABELS_SUFFIX}").is_file():
            stems.append(stem)
    return sorted(stems, key=int)


def list_presets(bundle: Bundle) -> dict[str, int]:
    """Preset name -> number of stored pairs, for every preset with at least one."""
    root = pairs_root(bundle)
    if not root.is_dir():
        return {}
    counts = {p.name: len(_pair_stems(p)) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    return {name: n for name, n in counts.items() if n}


def add_pair(bundle: Bundle, name: str, latent: torch.Tensor, labels: np.ndarray, source: dict | None = None) -> Path:
    """Store one (latent, painted labels) pair under preset ``name``; returns the latent file written.

    The caller has checked the pair against the model (``EditGANPipeline.check_latent``/``check_labels``);
    numbering is done under a lock so that two sessions adding at once get different numbers.
    """
    folder = preset_folder(bundle, name)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0 or labels.min() < 0 or labels.max() > 255:
        raise PairError(f"a painted label map must be (H, W) class ids 0..255, got shape {labels.shape}")
    try:
        item = LatentFile(latent=latent, bundle_id=bundle.id,
                          source={"preset": folder.name, "created": utc_now(), **(source or {})})
    except LatentError as exc:
        raise PairError(str(exc)) from exc
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with filelock.FileLock(folder / ".lock", timeout=LOCK_TIMEOUT_S):
            stems = _pair_stems(folder)
            if len(stems) >= MAX_PAIRS:
                raise PairError(f"preset '{folder.name}' already has {MAX_PAIRS} pairs, the most it can hold")
            stem = f"{int(stems[-1]) + 1 if stems else 0:03d}"
            grey = labels.astype(np.uint8)
            atomic_write(folder / f"{stem}{LABELS_SUFFIX}", lambda p: Image.fromarray(grey, "L").save(p, format="PNG"))
            return save_latent(item, folder / f"{stem}{LATENT_SUFFIX}")
    except filelock.Timeout as exc:
        raise PairError(f"preset '{folder.name}' is busy (another process is adding to it); try again") from exc


def _read_labels(path: Path) -> np.ndarray:
    if path.stat().st_size > MAX_LABEL_FILE_BYTES:
        raise PairError(f"'{path.name}' is larger than {MAX_LABEL_FILE_BYTES // 2**20} MB")
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise PairError(f"'{path.name}' is a {image.mode} picture; a pair's labels are grey class ids")
            return np.array(image.convert("L") if image.mode == "P" else image, dtype=np.uint8)
    except (OSError, Image.DecompressionBombError) as exc:
        raise PairError(f"'{path.name}' cannot be read: {exc}") from exc


def load_pairs(bundle: Bundle, name: str, latent_shape: tuple[int, int], resolution: int) -> list[PresetPair]:
    """Every pair of preset ``name``, checked against the model; names all the pairs that do not fit."""
    folder = preset_folder(bundle, name)
    pairs, problems = [], []
    for stem in _pair_stems(folder):
        try:
            item = load_latent(folder / f"{stem}{LATENT_SUFFIX}", bundle.id, latent_shape)
            labels = _read_labels(folder / f"{stem}{LABELS_SUFFIX}")
        except (LatentError, PairError) as exc:
            problems.append(str(exc))
            continue
        if labels.shape != (resolution, resolution):
            problems.append(f"'{stem}{LABELS_SUFFIX}' is {labels.shape[1]}x{labels.shape[0]} px, the model paints "
                            f"{resolution}x{resolution}")
        elif labels.max() >= len(bundle.classes):
            problems.append(f"'{stem}{LABELS_SUFFIX}' has class id {labels.max()}; the model has "
                            f"{len(bundle.classes)} classes")
        else:
            pairs.append(PresetPair(item.latent, labels, stem))
    if problems:
        listed = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise PairError(f"preset '{folder.name}' holds {len(problems)} pair(s) this model cannot use ({listed}); "
                        "remove those files from the preset's folder")
    return pairs
