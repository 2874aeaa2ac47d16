"""W+ latent files: the one format the studio's export and the batch CLI write, and the CLI reads back.

A latent only means something to the generator it was found with, so the file records the bundle id
and the latent shape and the reader checks both, as it does for editing vectors. Format
``editgan-latent/1``, a safetensors file with

- tensor ``latent``: (n_latent, style_dim) float32, the W+ code to render;
- tensor ``original`` (optional): the latent the recorded ``edits`` started from, e.g. a photo's embedding;
- metadata ``format`` = ``editgan-latent/1``, ``bundle_id``, ``latent_shape`` (JSON ``[n_latent, style_dim]``);
- metadata ``edits`` (optional): JSON list, one entry per edit run in order,
  ``{"vectors": [[name, scale], ...], "refine_steps": n}``, plus ``"keep_parts": true`` when the edit was
  first corrected for the face's side effects (``EditGANPipeline.refine(keep_parts=True)``);
- metadata ``source`` (optional): JSON object saying where the latent came from, e.g.
  ``{"image": "a.png", "embed_steps": 100, "psnr": 31.2}``;
- metadata ``run`` (optional): JSON object with the settings of the batch run that wrote the file (bundle
  fingerprint, vectors with scales and digests, steps, input digest), so a rerun can tell its own finished
  outputs from ones made differently.

Later versions may add optional entries under the same name; a change an older reader would misread
gets a new number, and a reader refuses numbers it does not know.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from editgan_core.user_files import load_tensors, parse_header, read_capped
from editgan_core.utils import atomic_write

FORMAT = "editgan-latent/1"
SUFFIX = ".latent.safetensors"  # what the batch CLI writes; the reader takes any *.safetensors
MAX_FILE_BYTES = 4 * 1024 * 1024  # two 18x512 float32 latents are 72 KiB; far more is not a latent file


class LatentError(ValueError):
    """A latent file that cannot be used; the message says why, naming the file."""


@dataclass(frozen=True)
class EditRecord:
    """One edit run on a latent: the vectors added (name, scale), then the refinement steps (0 = instant),
    after the per-face side-effect correction when ``keep_parts``."""

    vectors: tuple[tuple[str, float], ...]
    refine_steps: int = 0
    keep_parts: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {"vectors": [[name, scale] for name, scale in self.vectors], "refine_steps": self.refine_steps}
        return {**out, "keep_parts": True} if self.keep_parts else out


@dataclass(kw_only=True)
class LatentFile:
    """A latent with its bundle and, optionally, what it was edited from and how."""

    latent: torch.Tensor  # (1, n_latent, style_dim) float32, CPU
    bundle_id: str
    original: torch.Tensor | None = None  # the latent ``edits`` started from, same shape
    edits: list[EditRecord] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.bundle_id, str) or not self.bundle_id:
            raise LatentError("a latent file needs the id of the bundle it belongs to")
        self.latent = _as_latent(self.latent, "latent")
        if self.original is not None:
            self.original = _as_latent(self.original, "original")
            if self.original.shape != self.latent.shape:
                raise LatentError(f"the original latent is {_shape_str(self.original.shape[1:])} but the latent is "
                                  f"{_shape_str(self.latent_shape)}")

    @property
    def latent_shape(self) -> tuple[int, int]:
        return int(self.latent.shape[1]), int(self.latent.shape[2])


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def _as_latent(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """(n, d) or (1, n, d) floats -> (1, n, d) float32 CPU, finite."""
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        raise LatentError(f"the {what} must be a float tensor")
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim != 3 or tensor.shape[0] != 1 or tensor.numel() == 0:
        raise LatentError(f"the {what} must have shape (n_latent, style_dim), got {tuple(tensor.shape)}")
    tensor = tensor.detach().to("cpu", torch.float32).contiguous()
    if not torch.isfinite(tensor).all():
        raise LatentError(f"the {what} contains NaN or infinite values")
    return tensor


# ----------------------------------------------------------------------------------------------- writing


def latent_to_bytes(item: LatentFile) -> bytes:
    """The file's bytes; ``save_latent`` writes exactly these."""
    tensors = {"latent": item.latent[0]}
    if item.original is not None:
        tensors["original"] = item.original[0]
    meta = {"format": FORMAT, "bundle_id": item.bundle_id, "latent_shape": json.dumps(list(item.latent_shape))}
    if item.edits:
        meta["edits"] = json.dumps([e.to_json() for e in item.edits])
    for key in ("source", "run"):
        if getattr(item, key):
            try:
                meta[key] = json.dumps(getattr(item, key), ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise LatentError(f"the latent's {key} information cannot be stored: {exc}") from exc
    return safetensors.torch.save(tensors, metadata=meta)


def save_latent(item: LatentFile, path: str | Path) -> Path:
    """Write atomically, so a crash or a concurrent reader never sees half a file."""
    data = latent_to_bytes(item)
    return atomic_write(path, lambda p: p.write_bytes(data))


# ----------------------------------------------------------------------------------------------- reading


def _metadata(header: dict[str, Any], label: str) -> dict[str, str]:
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or "format" not in meta:
        raise LatentError(f"{label} is a safetensors file but not an EditGAN latent (no format marker)")
    if not str(meta["format"]).startswith(FORMAT.split("/")[0] + "/"):
        raise LatentError(f"{label} is not an EditGAN latent (its format is '{meta['format']}')")
    if meta["format"] != FORMAT:
        raise LatentError(f"{label} has format '{meta['format']}', this version reads '{FORMAT}'")
    if "latent" not in header:
        raise LatentError(f"{label} has no 'latent' tensor")
    if not isinstance(meta.get("bundle_id"), str) or not meta["bundle_id"]:
        raise LatentError(f"{label} names no bundle in its metadata")
    return meta


def _json_entry(meta: dict[str, str], key: str, label: str, kind: type, default: Any) -> Any:
    if key not in meta:
        return default
    try:
        value = json.loads(meta[key])
    except ValueError as exc:
        raise LatentError(f"{label} has unreadable metadata (the '{key}' entry is not JSON)") from exc
    if not isinstance(value, kind):
        raise LatentError(f"{label} has unreadable metadata (the '{key}' entry is not a JSON {kind.__name__})")
    return value


def _edit_record(entry: Any, label: str) -> EditRecord:
    try:
        vectors = tuple((str(name), float(scale)) for name, scale in entry["vectors"])
        record = EditRecord(vectors, int(entry.get("refine_steps", 0)), entry.get("keep_parts", False) is True)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise LatentError(f"{label} has an unreadable edit record: {entry!r:.80}") from exc
    if not all(math.isfinite(scale) for _, scale in record.vectors) or record.refine_steps < 0:
        raise LatentError(f"{label} has an edit record with an impossible scale or step count")
    return record


def _check_expected(item: LatentFile, label: str, expect_bundle_id: str | None,
                    expect_shape: Sequence[int] | None) -> None:
    """Refuse a latent of another generator, naming both sides so the user knows what to open."""
    if expect_bundle_id is not None and item.bundle_id != expect_bundle_id:
        raise LatentError(f"{label} is a latent of bundle '{item.bundle_id}', not of the open model "
                          f"'{expect_bundle_id}'; latents only work with the generator they were found with")
    if expect_shape is not None and item.latent_shape != tuple(int(s) for s in expect_shape):
        raise LatentError(f"{label} holds a {_shape_str(item.latent_shape)} latent but the open model uses "
                          f"{_shape_str(expect_shape)}")


def latent_from_bytes(data: bytes, label: str = "latent file", expect_bundle_id: str | None = None,
                      expect_shape: Sequence[int] | None = None) -> LatentFile:
    """Parse and check latent-file bytes; ``label`` names the source in error messages."""
    if len(data) > MAX_FILE_BYTES:
        raise LatentError(f"{label} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    meta = _metadata(parse_header(data, label, LatentError), label)
    shape = _json_entry(meta, "latent_shape", label, list, None)
    if shape is None:
        raise LatentError(f"{label} has no latent shape in its metadata")
    edits = [_edit_record(e, label) for e in _json_entry(meta, "edits", label, list, [])]
    source = _json_entry(meta, "source", label, dict, {})
    run = _json_entry(meta, "run", label, dict, {})
    tensors = load_tensors(data, label, LatentError)
    try:
        item = LatentFile(latent=tensors["latent"], bundle_id=meta["bundle_id"], original=tensors.get("original"),
                          edits=edits, source=source, run=run)
    except LatentError as exc:
        raise LatentError(f"{label}: {exc}") from exc
    if list(item.latent_shape) != shape:
        raise LatentError(f"{label} says its latent is {shape} but holds {list(item.latent_shape)}")
    _check_expected(item, label, expect_bundle_id, expect_shape)
    return item


def load_latent(path: str | Path, expect_bundle_id: str | None = None,
                expect_shape: Sequence[int] | None = None) -> LatentFile:
    """Read and check one latent file; any problem is a ``LatentError`` naming the file, not the server path."""
    path = Path(path)
    data = read_capped(path, "latent file", MAX_FILE_BYTES, LatentError, "a latent file is a few KB")
    return latent_from_bytes(data, f"'{path.name}'", expect_bundle_id, expect_shape)
