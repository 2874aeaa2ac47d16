"""Small helpers shared by the core: atomic file writes, file digests, image tensors and grids, image file suffixes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# what folder inputs (training, batch CLI) read
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp_path)`` and rename over ``path``, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes files private (and some writers recreate them); results are shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file, read in blocks (model files run to hundreds of MB; Python 3.10 has no
    ``hashlib.file_digest``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    images = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


def save_image_grid(images: torch.Tensor | np.ndarray, path: str | Path, nrow: int = 8, pad: int = 2) -> Path:
    """Tile a batch of images (tensor in [-1,1] or uint8 array) into one PNG."""
    if isinstance(images, torch.Tensor):
        images = tensor_to_uint8(images)
    b, h, w, c = images.shape
    ncol = min(nrow, b)
    nrows = (b + ncol - 1) // ncol
    grid = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = img
    return atomic_write(path, lambda p: Image.fromarray(grid).save(p, format="PNG"))
