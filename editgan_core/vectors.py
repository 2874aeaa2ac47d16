"""Editing vectors δw+: one safetensors file each, a per-bundle library, and W+ arithmetic.

A vector is only meaningful for the generator it was learned with, so every file records its
bundle id and latent shape and every load checks them. Files come from untrusted uploads in the
web app: reads are size-capped, parsed without pickle, and names never reach the file system
unsanitised.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import logging
import math
import os
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from editgan_core.user_files import load_tensors, parse_header, read_capped
from editgan_core.utils import atomic_write

log = logging.getLogger(__name__)

FORMAT = "editgan-vector/1"
SUFFIX = ".safetensors"
MAX_FILE_BYTES = 64 * 1024 * 1024  # a 18x512 float32 vector is 36 KiB; anything near this is not a vector
MAX_NAME_CHARS = 64
MAX_NAME_BYTES = 192  # stem + ".safetensors" must fit the common 255-byte file-name limit
_NAME_PUNCT = set(" -_()")
_RESERVED = {"con", "prn", "aux", "nul", "clock$"} | {
    f"{dev}{d}" for dev in ("com", "lpt") for d in [*"0123456789", "¹", "²", "³"]
}
_NPY_MAGIC = b"\x93NUMPY"


class VectorError(ValueError):
    """A vector file, name or operation the user asked for cannot be used; the message says why."""


class VectorNotFoundError(VectorError):
    """No vector of that name in the library."""


def utc_now() -> str:
    """ISO-8601 UTC timestamp used for ``created``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


@dataclass(kw_only=True, eq=False)
class EditVector:
    """δw+ plus what a user (and the loader) needs to know about it."""

    delta: torch.Tensor = field(repr=False)
    name: str
    description: str = ""
    bundle_id: str
    class_ids: list[int] = field(default_factory=list)
    default_scale: float = 1.0
    created: str = field(default_factory=utc_now)
    source: str = "learned"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.delta, torch.Tensor):
            raise VectorError(f"vector '{self.name}': delta must be a torch.Tensor, got {type(self.delta).__name__}")
        if self.delta.ndim != 2 or self.delta.numel() == 0:
            raise VectorError(
                f"vector '{self.name}': delta must have shape (n_latent, style_dim), got {tuple(self.delta.shape)}"
            )
        if not (self.delta.is_floating_point()):
            raise VectorError(f"vector '{self.name}': delta must hold floats, got {self.delta.dtype}")
        self.delta = self.delta.detach().to("cpu", torch.float32).contiguous()
        self.class_ids = [int(c) for c in self.class_ids]
        self.default_scale = float(self.default_scale)
        if not math.isfinite(self.default_scale):
            raise VectorError(f"vector '{self.name}': default scale must be a finite number")

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(n_latent, style_dim) of the W+ space this vector lives in."""
        return (int(self.delta.shape[0]), int(self.delta.shape[1]))

    def applied_to(self, latent: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """w+ + s·δ for one latent (n, d) or a batch (B, n, d); ``scale=None`` uses the default scale."""
        return compose(latent, [(self, self.default_scale if scale is None else scale)])

    def metadata(self) -> dict[str, Any]:
        """Everything but the tensor, as stored in the file's JSON."""
        return {
            "name": self.name,
            "description": self.description,
            "bundle_id": self.bundle_id,
            "latent_shape": list(self.latent_shape),
            "class_ids": list(self.class_ids),
            "default_scale": self.default_scale,
            "created": self.created,
            "source": self.source,
            "extra": self.extra,
        }


# ----------------------------------------------------------------------------------------------- arithmetic


def compose(
    latent: torch.Tensor, vectors_and_scales: Iterable[tuple[EditVector | torch.Tensor, float | None]]
) -> torch.Tensor:
    """latent + Σ sᵢ·δᵢ — vectors compose by summation; ``None`` scale means the vector's default."""
    if latent.ndim not in (2, 3):
        raise VectorError(f"latent must be (n_latent, dim) or (B, n_latent, dim), got {tuple(latent.shape)}")
    out = latent
    for item, scale in vectors_and_scales:
        if isinstance(item, EditVector):
            delta, label = item.delta, f"vector '{item.name}'"
            scale = item.default_scale if scale is None else scale
        else:
            delta, label = item, "delta"
            scale = 1.0 if scale is None else scale
        if delta.ndim != 2 or tuple(delta.shape) != tuple(latent.shape[-2:]):
            raise VectorError(
                f"{label} has latent {_shape_str(delta.shape)} but the latent is {_shape_str(latent.shape[-2:])}"
            )
        scale = float(scale)
        if not math.isfinite(scale):
            raise VectorError(f"scale for {label} must be a finite number, got {scale}")
        out = out + scale * delta.to(device=latent.device, dtype=latent.dtype)
    return out


# ----------------------------------------------------------------------------------------------- names


def sanitize_name(name: str) -> str:
    """A display name that is also a safe, portable file stem (no separators, dots, controls)."""
    if not isinstance(name, str):
        raise VectorError(f"vector name must be text, got {type(name).__name__}")
    name = unicodedata.normalize("NFC", name)
    kept = [c if (c in _NAME_PUNCT or unicodedata.category(c)[0] in "LNM") else " " for c in name]
    clean = re.sub(r"\s+", " ", "".join(kept)).strip().lstrip("-").strip()
    clean = clean[:MAX_NAME_CHARS].rstrip()
    while len(clean.encode("utf-8")) > MAX_NAME_BYTES:
        clean = clean[:-1].rstrip()
    if not clean or not any(unicodedata.category(c)[0] in "LN" for c in clean):
        raise VectorError(f"'{name[:80]}' is not usable as a vector name: use letters or digits")
    if clean.casefold() in _RESERVED:
        raise VectorError(f"'{clean}' is a reserved name on some systems; choose another vector name")
    return clean


def _name_key(name: str) -> str:
    """Names that differ only in case clash: they would be one file on macOS/Windows."""
    return name.casefold()


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
    except (TypeError, ValueError) as exc:
        raise VectorError(f"vector '{vec.name}': metadata cannot be stored ({exc})") from exc
    return safetensors.torch.save({"delta": vec.delta}, metadata={"format": FORMAT, "editgan": meta_json})


def save_vector(vec: EditVector, path: str | Path) -> Path:
    """Write atomically, so a crash or a concurrent reader never sees half a vector."""
    data = vector_to_bytes(vec)
    return atomic_write(path, lambda p: p.write_bytes(data))


def _check_expected(vec: EditVector, expect_bundle_id: str | None, expect_shape: Sequence[int] | None) -> None:
    """Refuse a vector made for another generator, naming both sides so the user knows what to open."""
    shape_ok = expect_shape is None or vec.latent_shape == tuple(int(s) for s in expect_shape)
    bundle_ok = expect_bundle_id is None or vec.bundle_id == expect_bundle_id
    if shape_ok and bundle_ok:
        return
    theirs = f"vector '{vec.name}' was learned for bundle '{vec.bundle_id}' (latent {_shape_str(vec.latent_shape)})"
    if expect_bundle_id is not None and expect_shape is not None:
        ours = f"the open model is '{expect_bundle_id}' (latent {_shape_str(expect_shape)})"
    elif expect_bundle_id is not None:
        ours = f"the open model is '{expect_bundle_id}'"
    else:
        ours = f"the open model has latent {_shape_str(expect_shape or ())}"
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
    try:
        info = json.loads(meta.get("editgan", ""))
    except ValueError as exc:
        raise VectorError(f"{label} has unreadable metadata (the 'editgan' entry is not JSON)") from exc
    if not isinstance(info, dict):
        raise VectorError(f"{label} has unreadable metadata (the 'editgan' entry is not a JSON object)")
    for key in ("name", "bundle_id"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise VectorError(f"{label} has no {key.replace('_', ' ')} in its metadata")
    shape = header["delta"].get("shape") if isinstance(header["delta"], dict) else None
    if not isinstance(shape, list) or len(shape) != 2:
        raise VectorError(f"vector '{info['name']}' must be a 2-D (n_latent, style_dim) tensor, got shape {shape}")
    return info


def vector_from_bytes(
    data: bytes,
    label: str = "vector file",
    expect_bundle_id: str | None = None,
    expect_shape: Sequence[int] | None = None,
) -> EditVector:
    """Parse and validate vector bytes; ``label`` names the source in error messages."""
    if len(data) > MAX_FILE_BYTES:
        raise VectorError(f"{label} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    if data.startswith(_NPY_MAGIC):
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
            class_ids=list(info.get("class_ids", [])),
            default_scale=float(info.get("default_scale", 1.0)),
            created=str(info.get("created", "")),
            source=str(info.get("source", "learned")),
            extra=info["extra"] if isinstance(info.get("extra"), dict) else {},
        )
    except VectorError:
        raise
    except (TypeError, ValueError) as exc:
        raise VectorError(f"vector '{name}' has invalid metadata: {exc}") from exc
    _check_expected(vec, expect_bundle_id, expect_shape)
    return vec


def load_vector(
    path: str | Path, expect_bundle_id: str | None = None, expect_shape: Sequence[int] | None = None
) -> EditVector:
    """Load and validate one vector file; any problem is a ``VectorError`` naming the file, not the server path."""
    path = Path(path)
    data = read_capped(path, "vector file", MAX_FILE_BYTES, VectorError, "an editing vector is a few KB")
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
    data = read_capped(path, ".npy file", MAX_FILE_BYTES, VectorError, "an editing vector is a few KB")
    return _vector_from_npy_bytes(data, path, bundle_id, latent_shape, name, class_ids, default_scale)


def _vector_from_npy_bytes(
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
    if not data.startswith(_NPY_MAGIC):
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
            f"{label} holds a {_shape_str(arr.shape)} latent offset but bundle '{bundle_id}' uses latent "
            f"{_shape_str(want)}; it was made for another generator"
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


# ----------------------------------------------------------------------------------------------- library


def _created_key(created: str) -> datetime:
    """Sort key for ``created``; unparseable stamps sort first rather than breaking the list."""
    try:
        dt = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return datetime.min.replace(tzinfo=timezone.utc)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


@dataclass
class _Entry:
    vec: EditVector
    path: Path
    preset: bool


_ROOT_LOCKS: dict[str, threading.RLock] = {}
_ROOT_LOCKS_GUARD = threading.Lock()


def _lock_for(root: Path) -> threading.RLock:
    """One lock per folder, shared by every library object on it (one per web session is typical)."""
    key = os.path.normcase(str(root.resolve()))
    with _ROOT_LOCKS_GUARD:
        return _ROOT_LOCKS.setdefault(key, threading.RLock())


class VectorLibrary:
    """The user's vectors for one bundle (a writable folder) plus the bundle's read-only presets."""

    def __init__(
        self,
        root: str | Path,
        bundle_id: str,
        latent_shape: Sequence[int],
        read_only_roots: Sequence[str | Path] = (),
    ) -> None:
        self.root = Path(root)
        self.bundle_id = bundle_id
        self.latent_shape = (int(latent_shape[0]), int(latent_shape[1]))
        self.read_only_roots = [Path(p) for p in read_only_roots]
        self.problems: list[tuple[Path, str]] = []  # files skipped by the last list(), with the reason
        self._lock = _lock_for(self.root)

    # -- reading

    def _scan(self) -> list[_Entry]:
        problems: list[tuple[Path, str]] = []
        presets: list[_Entry] = []
        users: list[_Entry] = []
        folders = [(p, True) for p in self.read_only_roots] + [(self.root, False)]
        for folder, preset in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob(f"*{SUFFIX}")):
                if path.name.startswith(".") or not path.is_file():
                    continue
                try:
                    vec = load_vector(path, self.bundle_id, self.latent_shape)
                    clean = sanitize_name(vec.name)
                except VectorError as exc:
                    problems.append((path, str(exc)))
                    continue
                if clean != vec.name:
                    vec = dataclasses.replace(vec, name=clean)
                (presets if preset else users).append(_Entry(vec, path, preset))
        presets.sort(key=lambda e: _name_key(e.vec.name))
        users.sort(key=lambda e: (_created_key(e.vec.created), _name_key(e.vec.name)))
        entries: list[_Entry] = []
        seen: dict[str, Path] = {}
        for e in presets + users:
            key = _name_key(e.vec.name)
            if key in seen:
                problems.append((e.path, f"name '{e.vec.name}' is already used by '{seen[key].name}'; skipped"))
                continue
            seen[key] = e.path
            entries.append(e)
        for path, why in problems:
            log.warning("skipping vector file %s: %s", path, why)
        self.problems = problems
        return entries

    def _find(self, entries: list[_Entry], name: str) -> _Entry:
        key = _name_key(sanitize_name(name))
        for e in entries:
            if _name_key(e.vec.name) == key:
                return e
        raise VectorNotFoundError(f"no vector named '{name}' for bundle '{self.bundle_id}'")

    def list(self) -> builtins.list[EditVector]:  # builtins: `list` is this method inside the class
        """Presets first (by name), then the user's vectors oldest first; bad files land in ``problems``."""
        with self._lock:
            return [e.vec for e in self._scan()]

    def get(self, name: str) -> EditVector:
        """The vector called ``name`` (case-insensitive)."""
        with self._lock:
            return self._find(self._scan(), name).vec

    def is_preset(self, name: str) -> bool:
        """Whether ``name`` is one of the bundle's shipped, read-only vectors."""
        with self._lock:
            return self._find(self._scan(), name).preset

    # -- writing

    def _path_for(self, name: str) -> Path:
        path = self.root / f"{name}{SUFFIX}"
        if path.parent != self.root or Path(name).name != name:  # sanitize_name makes this impossible; be sure
            raise VectorError(f"'{name}' is not usable as a vector name")
        return path

    def _check_fits(self, vec: EditVector) -> None:
        _check_expected(vec, self.bundle_id, self.latent_shape)

    def _clash(
        self, entries: builtins.list[_Entry], name: str, ignore: _Entry | None = None
    ) -> _Entry | Path | None:
        key = _name_key(name)
        for e in entries:
            if e is not ignore and _name_key(e.vec.name) == key:
                return e
        path = self._path_for(name)
        if path.exists() and not (ignore is not None and _same_file(path, ignore.path)):
            return path
        return None

    def save(self, vec: EditVector, overwrite: bool = False) -> EditVector:
        """Store a vector under its (sanitised) name; returns what was stored."""
        name = sanitize_name(vec.name)
        self._check_fits(vec)
        if name != vec.name:
            vec = dataclasses.replace(vec, name=name)
        with self._lock:
            entries = self._scan()
            existing = next((e for e in entries if _name_key(e.vec.name) == _name_key(name)), None)
            if existing is not None and existing.preset:
                raise VectorError(f"'{existing.vec.name}' is a preset of this model and read-only; choose another name")
            clash = self._clash(entries, name, ignore=existing if overwrite else None)
            if clash is not None:
                raise VectorError(f"{_clash_str(clash)} already exists; choose another name or allow overwriting")
            path = self._path_for(name)
            save_vector(vec, path)
            if existing is not None and not _same_file(existing.path, path):
                existing.path.unlink(missing_ok=True)  # overwrite of "Smile" by "smile": drop the old spelling
        return vec

    def rename(self, old: str, new: str) -> EditVector:
        """Give a user vector a new name (changing only case is allowed)."""
        with self._lock:
            entries = self._scan()
            entry = self._find(entries, old)
            if entry.preset:
                raise VectorError(f"'{entry.vec.name}' is a preset shipped with the model and cannot be renamed")
            name = sanitize_name(new)
            clash = self._clash(entries, name, ignore=entry)
            if clash is not None:
                raise VectorError(f"{_clash_str(clash)} already exists; choose another name")
            vec = dataclasses.replace(entry.vec, name=name)
            path = self._path_for(name)
            same = _same_file(entry.path, path)  # case-only rename on a case-insensitive file system
            save_vector(vec, path)
            if not same and entry.path != path:
                entry.path.unlink(missing_ok=True)
        return vec

    def delete(self, name: str) -> None:
        """Remove a user vector; presets are part of the model bundle and stay."""
        with self._lock:
            entry = self._find(self._scan(), name)
            if entry.preset:
                raise VectorError(f"'{entry.vec.name}' is a preset shipped with the model and cannot be deleted")
            entry.path.unlink(missing_ok=True)

    def export(self, name: str, dest_path: str | Path) -> Path:
        """Write a copy of the vector to ``dest_path`` (a file, or a folder to put '<name>.safetensors' in)."""
        vec = self.get(name)
        dest = Path(dest_path)
        if dest.is_dir():
            dest = dest / f"{vec.name}{SUFFIX}"
        return save_vector(vec, dest)

    def import_file(self, path: str | Path, name: str | None = None) -> EditVector:
        """Add a vector file from this project or an EditGAN ``.npy``; a clashing name gets ' (2)', ' (3)', ..."""
        path = Path(path)
        data = read_capped(path, "file", MAX_FILE_BYTES, VectorError, "an editing vector is a few KB")
        if data.startswith((_NPY_MAGIC, b"PK")):
            vec = _vector_from_npy_bytes(data, path, self.bundle_id, self.latent_shape, name=name)
        else:
            vec = vector_from_bytes(data, f"'{path.name}'", self.bundle_id, self.latent_shape)
            if name is not None:
                vec = dataclasses.replace(vec, name=name)
        base = sanitize_name(vec.name)
        with self._lock:
            entries = self._scan()
            unique = base
            n = 1
            while self._clash(entries, unique) is not None:
                n += 1
                suffix = f" ({n})"
                unique = sanitize_name(base[: MAX_NAME_CHARS - len(suffix)].rstrip() + suffix)
            return self.save(dataclasses.replace(vec, name=unique))


def _clash_str(clash: _Entry | Path) -> str:
    if isinstance(clash, _Entry):
        return f"a vector named '{clash.vec.name}' (names ignore case)"
    return f"a file named '{clash.name}'"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
