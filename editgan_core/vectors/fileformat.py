"""The vector file: one safetensors file per vector, its JSON metadata, and official EditGAN ``.npy`` import.

A vector is only meaningful for the generator it was learned with, so every file records its
bundle id and latent shape and every load checks them. Files come from untrusted uploads in the
web app: reads are size-capped and parsed without pickle.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from editgan_core.user_files import load_tensors, parse_header, read_capped
from editgan_core.utils import atomic_write
from editgan_core.vectors.vector import (
    MAX_META_CHARS,
    MAX_META_DEPTH,
    EditVector,
    VectorError,
    json_depth,
    sanitize_name,
    shape_str,
)

FORMAT = "editgan-vector/1"
SUFFIX = ".safetensors"
MAX_FILE_BYTES = 64 * 1024 * 1024  # a 18x512 float32 vector is 36 KiB; anything near this is not a vector
NPY_MAGIC = b"\x93NUMPY"


# ----------------------------------------------------------------------------------------------- file format


def _to_jsonable(obj: Any) -> Any:
    """Let metrics be stored straight from a training loop (0-d tensors, NumPy scalars)."""
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, (np.ndarray, np.generic)) and obj.size == 1:
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def vector_to_bytes(vec: EditVector) -> bytes:
    """The safetensors bytes of a vector (for downloads); ``save_vector`` writes the same bytes."""
    try:
        meta_json = json.dumps(vec.metadata(), ensure_ascii=False, default=_to_jsonable)
    except (TypeError, ValueError, RecursionError) as exc:
        raise VectorError(f"vector '{vec.name}': metadata cannot be stored ({exc})") from exc
    if len(meta_json) > MAX_META_CHARS:  # what is written must be readable again (never "saved" but unlisted)
        raise VectorError(f"vector '{vec.name}': its metadata takes {len(meta_json) // 1024} KB; the limit is "
                          f"{MAX_META_CHARS // 1024} KB")
    return safetensors.torch.save({"delta": vec.delta}, metadata={"format": FORMAT, "editgan": meta_json})


def save_vector(vec: EditVector, path: str | Path) -> Path:
    """Write atomically, so a crash or a concurrent reader never sees half a vector."""
    data = vector_to_bytes(vec)
    return atomic_write(path, lambda p: p.write_bytes(data))


def read_vector_file(path: Path, what: str) -> bytes:
    """The bytes of a file handed in as a vector, read only up to the cap so uploads cannot exhaust memory."""
    return read_capped(path, what, MAX_FILE_BYTES, VectorError, "an editing vector is a few KB")


def check_expected(vec: EditVector, expect_bundle_id: str | None, expect_shape: Sequence[int] | None) -> None:
    """Refuse a vector made for another generator, naming both sides so the user knows what to open."""
    shape_ok = expect_shape is None or vec.latent_shape == tuple(int(s) for s in expect_shape)
    bundle_ok = expect_bundle_id is None or vec.bundle_id == expect_bundle_id
    if shape_ok and bundle_ok:
        return
    theirs = f"vector '{vec.name}' was learned for bundle '{vec.bundle_id}' (latent {shape_str(vec.latent_shape)})"
    if expect_bundle_id is not None and expect_shape is not None:
        ours = f"the open model is '{expect_bundle_id}' (latent {shape_str(expect_shape)})"
    elif expect_bundle_id is not None:
        ours = f"the open model is '{expect_bundle_id}'"
    else:
        ours = f"the open model has latent {shape_str(expect_shape or ())}"
    raise VectorError(f"{theirs} but {ours}; vectors only work with the generator they were learned on")


def _vector_info(header: dict[str, Any], label: str) -> dict[str, Any]:
    """The vector's JSON metadata from a parsed header, after the format and tensor checks."""
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or "format" not in meta:
        raise VectorError(f"{label} is a safetensors file but not an EditGAN studio vector (no format marker)")
    if meta["format"] != FORMAT:
        raise VectorError(f"{label} has format '{meta['format']}', this version reads '{FORMAT}'")
    if "delta" not in header:
        raise VectorError(f"{label} has no 'delta' tensor")
    text = meta.get("editgan", "")
    if not isinstance(text, str) or len(text) > MAX_META_CHARS:
        raise VectorError(f"{label} has metadata over the limit of {MAX_META_CHARS // 1024} KB")
    try:
        info = json.loads(text)
    except RecursionError as exc:
        raise VectorError(f"{label} has metadata nested deeper than {MAX_META_DEPTH} levels") from exc
    except ValueError as exc:
        raise VectorError(f"{label} has unreadable metadata (the 'editgan' entry is not JSON)") from exc
    if not isinstance(info, dict):
        raise VectorError(f"{label} has unreadable metadata (the 'editgan' entry is not a JSON object)")
    if json_depth(info) > MAX_META_DEPTH:
        raise VectorError(f"{label} has metadata nested deeper than {MAX_META_DEPTH} levels")
    for key in ("name", "bundle_id"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise VectorError(f"{label} has no {key.replace('_', ' ')} in its metadata")
    shape = header["delta"].get("shape") if isinstance(header["delta"], dict) else None
    if not isinstance(shape, list) or len(shape) != 2:
        raise VectorError(f"vector '{info['name']}' must be a 2-D (n_latent, style_dim) tensor, got shape {shape}")
    return info


def _class_ids(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in value):
        raise TypeError("class_ids must be a list of whole numbers")
    return value


def vector_from_bytes(
    data: bytes,
    label: str = "vector file",
    expect_bundle_id: str | None = None,
    expect_shape: Sequence[int] | None = None,
) -> EditVector:
    """Parse and validate vector bytes; ``label`` names the source in error messages."""
    if len(data) > MAX_FILE_BYTES:
        raise VectorError(f"{label} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    if data.startswith(NPY_MAGIC):
        raise VectorError(f"{label} is a NumPy .npy file; import it as an EditGAN .npy vector instead")
    info = _vector_info(parse_header(data, label, VectorError), label)
    name = info["name"]
    delta = load_tensors(data, label, VectorError)["delta"]
    if not delta.is_floating_point():
        raise VectorError(f"vector '{name}' must hold floats, got {delta.dtype}")
    delta = delta.to(torch.float32)
    if not torch.isfinite(delta).all():
        raise VectorError(f"vector '{name}' contains NaN or infinite values; it cannot be applied")
    try:
        vec = EditVector(
            delta=delta,
            name=name,
            description=str(info.get("description", "")),
            bundle_id=info["bundle_id"],
            class_ids=_class_ids(info.get("class_ids", [])),
            default_scale=float(info.get("default_scale", 1.0)),
            created=str(info.get("created", "")),
            source=str(info.get("source", "learned")),
            extra=info["extra"] if isinstance(info.get("extra"), dict) else {},
        )
    except VectorError:
        raise
    except (TypeError, ValueError) as exc:
        raise VectorError(f"vector '{name}' has invalid metadata: {exc}") from exc
    check_expected(vec, expect_bundle_id, expect_shape)
    return vec


def load_vector(
    path: str | Path, expect_bundle_id: str | None = None, expect_shape: Sequence[int] | None = None
) -> EditVector:
    """Load and validate one vector file; any problem is a ``VectorError`` naming the file, not the server path."""
    path = Path(path)
    data = read_vector_file(path, "vector file")
    return vector_from_bytes(data, f"'{path.name}'", expect_bundle_id, expect_shape)


def import_npy(
    path: str | Path,
    bundle_id: str,
    latent_shape: Sequence[int],
    name: str | None = None,
    class_ids: Iterable[int] = (),
    default_scale: float = 1.0,
) -> EditVector:
    """Read an official EditGAN ``.npy`` vector, (1, n_latent, 512) or (n_latent, 512), without pickle."""
    path = Path(path)
    data = read_vector_file(path, ".npy file")
    return vector_from_npy_bytes(data, path, bundle_id, latent_shape, name, class_ids, default_scale)


def vector_from_npy_bytes(
    data: bytes,
    path: Path,
    bundle_id: str,
    latent_shape: Sequence[int],
    name: str | None = None,
    class_ids: Iterable[int] = (),
    default_scale: float = 1.0,
) -> EditVector:
    label = f"'{path.name}'"
    if data.startswith(b"PK"):
        raise VectorError(f"{label} is a .npz archive; import the single .npy vector inside it")
    if not data.startswith(NPY_MAGIC):
        raise VectorError(f"{label} is not a NumPy .npy file")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise VectorError(f"{label} holds Python objects, not numbers; refusing to unpickle it") from exc
        raise VectorError(f"{label} is not a readable .npy file: {exc}") from exc
    except Exception as exc:  # truncated or corrupt headers raise assorted errors
        raise VectorError(f"{label} is not a readable .npy file: {exc}") from exc
    if arr.dtype.kind != "f":
        raise VectorError(f"{label} holds {arr.dtype} values, expected float32 numbers")
    want = tuple(int(s) for s in latent_shape)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise VectorError(
            f"{label} has shape {tuple(arr.shape)}; an EditGAN vector is (1, n_latent, 512) or (n_latent, 512)"
        )
    if tuple(arr.shape) != want:
        raise VectorError(
            f"{label} holds a {shape_str(arr.shape)} latent offset but bundle '{bundle_id}' uses latent "
            f"{shape_str(want)}; it was made for another generator"
        )
    arr = np.array(arr, dtype=np.float32, order="C")  # a native-endian copy torch can wrap
    if not np.isfinite(arr).all():
        raise VectorError(f"{label} contains NaN or infinite values; it cannot be applied")
    try:
        clean = sanitize_name(name if name is not None else path.stem)
    except VectorError:
        if name is not None:
            raise
        clean = "imported"
    return EditVector(
        delta=torch.from_numpy(arr),
        name=clean,
        bundle_id=bundle_id,
        class_ids=list(class_ids),
        default_scale=default_scale,
        source="imported-npy",
        extra={"original_file": path.name},
    )
