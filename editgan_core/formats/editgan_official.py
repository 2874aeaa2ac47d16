"""The official EditGAN / DatasetGAN release's segmentation ensemble, imported as a ``PixelEnsemble``.

The release saves each of its pixel classifiers as ``{'model_state_dict': DataParallel(...).state_dict()}``
(keys ``module.layers.*``); the module names of ``PixelMLP`` are the official ones, so a member loads
once that prefix is removed. The files carry no config: the widths are read off the tensor shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from editgan_core.models.checkpoint import read_torch_file
from editgan_core.models.segmenter import PixelEnsemble
from editgan_core.models.serialization import CheckpointError, load_checked


def load_segmenter(paths: Sequence[str | Path], feature_channels: Sequence[int],
                   upsample: str = "bilinear") -> PixelEnsemble:
    """Import the official EditGAN/DatasetGAN ensemble, one ``{'model_state_dict': ...}`` file per member,
    frozen and in eval mode like every loaded network.

    Sizes (hidden widths, classes) are read from the files; the input width must equal
    ``sum(feature_channels)`` of the generator whose features it will see.
    """
    if not paths:
        raise CheckpointError("no ensemble member files given")
    states, shapes = [], None
    for path in map(Path, paths):
        state = official_state(path)
        found = read_official_shapes(state, path)
        if found[0] != sum(feature_channels):
            raise CheckpointError(
                f"{path.name}: module.layers.0.weight takes d={found[0]} features, but the generator's maps "
                f"have sum(feature_channels)={sum(feature_channels)} ({len(feature_channels)} maps); "
                "is this ensemble for another generator or resolution?")
        if shapes is not None and found != shapes:
            raise CheckpointError(f"{path.name}: member shape (d, h1, h2, C)={found} differs from the first "
                                  f"member's {shapes}")
        shapes = found
        states.append(state)
    _, h1, h2, num_classes = shapes
    ensemble = PixelEnsemble(feature_channels, num_classes, len(states), (h1, h2), upsample)
    for member, state, path in zip(ensemble.members, states, paths, strict=True):
        load_checked(member, state, f"official ensemble member {Path(path).name}")
    return ensemble.eval().requires_grad_(False)


def official_state(path: Path) -> dict[str, torch.Tensor]:
    """A member's state dict with DataParallel's ``module.`` prefix removed."""
    ckpt = read_torch_file(path)
    state = ckpt.get("model_state_dict", ckpt)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name}: 'model_state_dict' is a {type(state).__name__}, expected a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for bn in ("layers.2", "layers.5"):  # files from before PyTorch 0.4.1 lack the counter
        if f"{bn}.running_mean" in state:
            state.setdefault(f"{bn}.num_batches_tracked", torch.tensor(0))
    return state


def read_official_shapes(state: dict[str, torch.Tensor], path: Path) -> tuple[int, int, int, int]:
    """(d, h1, h2, C) of an official member, with the offending key named when it is malformed."""
    shapes = []
    for key in ("layers.0.weight", "layers.3.weight", "layers.6.weight"):
        if key not in state:
            found = ", ".join(sorted(state)[:8])
            raise CheckpointError(f"{path.name}: no 'module.{key}'; not an official pixel classifier (keys: {found})")
        if state[key].ndim != 2:
            raise CheckpointError(f"{path.name}: module.{key} has shape {tuple(state[key].shape)}, expected a matrix")
        shapes.append(tuple(state[key].shape))
    (h1, d), (h2, h1b), (num_classes, h2b) = shapes
    if h1b != h1 or h2b != h2:
        raise CheckpointError(f"{path.name}: layer widths do not chain: layers.0 {shapes[0]}, layers.3 {shapes[1]}, "
                              f"layers.6 {shapes[2]}")
    return d, h1, h2, num_classes
