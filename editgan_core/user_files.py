"""Reading safetensors files that users hand in (uploads, batch inputs) without trusting them.

Shared by editing vectors and latent files: the read is capped on the bytes actually read (not a
racy ``stat``), the header is checked before the parser sees it, and every problem becomes the
caller's own error type with a message naming the file, never the server path.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

MAX_HEADER_BYTES = 1024 * 1024


def read_capped(path: Path, what: str, limit: int, error: type[Exception], expected_size: str = "") -> bytes:
    """At most ``limit`` bytes of ``path``; ``what`` names the kind of file, ``expected_size`` ends the size error."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError as exc:
        raise error(f"{what} '{path.name}' does not exist") from exc
    except IsADirectoryError as exc:
        raise error(f"'{path.name}' is a folder, not a {what}") from exc
    except OSError as exc:
        raise error(f"{what} '{path.name}' cannot be read: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise error(f"{what} '{path.name}' is larger than {limit // (1024 * 1024)} MB"
                    + (f"; {expected_size}" if expected_size else ""))
    return data


def parse_header(data: bytes, label: str, error: type[Exception]) -> dict[str, Any]:
    """The JSON header of safetensors bytes (tensor entries and ``__metadata__``), checked for sanity."""
    not_st = f"{label} is not a safetensors file"
    if len(data) < 8:
        raise error(f"{not_st} (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise error(f"{not_st} (bad header length)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise error(f"{not_st} (header is not JSON)") from exc
    except RecursionError as exc:
        raise error(f"{not_st} (header nested too deeply)") from exc
    if not isinstance(header, dict):
        raise error(f"{not_st} (header is not a JSON object)")
    return header


def load_tensors(data: bytes, label: str, error: type[Exception]) -> dict[str, torch.Tensor]:
    """The tensors of safetensors bytes whose header ``parse_header`` accepted."""
    try:
        return safetensors.torch.load(data)
    except Exception as exc:  # the parser's own error types vary between versions
        raise error(f"{label} is damaged: {exc}") from exc
