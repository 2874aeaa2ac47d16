"""Saving an edited photo the way it came in: same file format (where it can hold an 8-bit RGB photo), same size."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# formats written as they came; the rest (GIF's 256 colours, formats Pillow only reads) become PNG
WRITABLE = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
READ_AS = {"MPO": "JPEG"}  # a phone's multi-picture JPEG: its first picture is a plain JPEG


def output_format(source_format: str | None) -> str:
    """The format an edit of a ``source_format`` file is saved in."""
    fmt = READ_AS.get(source_format or "", source_format or "")
    return fmt if fmt in WRITABLE else "PNG"


def suffix(source_format: str | None) -> str:
    return WRITABLE[output_format(source_format)]


def encode_like(pixels: np.ndarray, source_format: str | None) -> bytes:
    """``pixels`` (H, W, 3) uint8 as file bytes in the format of the source (JPEG at quality 95, no chroma
    subsampling; WebP lossless, so the untouched pixels stay exact)."""
    fmt = output_format(source_format)
    options = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"lossless": True},
               "TIFF": {"compression": "tiff_deflate"}}.get(fmt, {})
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format=fmt, **options)
    return buffer.getvalue()
