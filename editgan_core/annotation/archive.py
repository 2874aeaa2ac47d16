"""An annotation set as one zip file: export to share or back up, import with every member checked first.

A zip from elsewhere is untrusted: member names could climb out of the folder, sizes could lie,
a few kilobytes could inflate to gigabytes, and pictures could be of another size or class list.
Import therefore reads the directory first (names, counts, declared sizes and compression ratios),
then reads every member with a hard cap, decodes and checks it against the bundle in memory, and
only when all of them pass adds the entries to the store (under new names, so nothing is overwritten).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from editgan_core.annotation.folder import LABELS_SUFFIX, LATENT_SUFFIX, PREVIEW_SUFFIX
from editgan_core.annotation.store import META_SUFFIX, AnnotationError, AnnotationStore, Entry
from editgan_core.latents import MAX_FILE_BYTES as MAX_LATENT_BYTES
from editgan_core.latents import LatentError, latent_from_bytes
from editgan_core.utils import atomic_write

FOLDER = "annotations/"
SET_FILE = "annotation-set.json"
MAX_ZIP_BYTES = 512 * 2**20
MAX_MEMBERS = 5 * 1000 + 2  # five files per entry, the set file and the folder entry
MAX_TOTAL_BYTES = 2 * 2**30
MAX_RATIO = 200  # uncompressed / compressed; PNGs and latents barely compress, a bomb inflates thousands of times
MAX_META_BYTES = 64 * 1024
KINDS = {".png": 64 * 2**20, LABELS_SUFFIX: 16 * 2**20, PREVIEW_SUFFIX: 64 * 2**20, LATENT_SUFFIX: MAX_LATENT_BYTES,
         META_SUFFIX: MAX_META_BYTES}
MEMBER = re.compile(r"^annotations/([0-9]{3,6}-[a-z0-9_-]{1,40})(\.png|\.labels\.png|\.preview\.png"
                    r"|\.latent\.safetensors|\.json)$")


def export_zip(store: AnnotationStore, dest: Path) -> Path:
    """Every entry's files plus a description of the set (bundle, classes, resolution), written atomically."""
    names = store.names()
    if not names:
        raise AnnotationError("the annotation set is empty: nothing to export")
    description = {"format": "editgan-annotations/1", "bundle_id": store.bundle.id, "resolution": store.size,
                   "classes": [c.name for c in store.bundle.classes], "entries": len(names),
                   "done": store.progress().done}

    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(SET_FILE, json.dumps(description, indent=1))
            for name in names:
                for suffix in (".png", LATENT_SUFFIX, LABELS_SUFFIX, PREVIEW_SUFFIX, META_SUFFIX):
                    path_in = store.path(name, suffix)
                    if path_in.is_file():
                        zf.write(path_in, FOLDER + path_in.name)

    return atomic_write(dest, write)


@dataclass
class _Incoming:
    image: np.ndarray | None = None
    latent: Any = None
    labels: np.ndarray | None = None
    meta: dict | None = None


def _check_directory(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Names, counts, declared sizes and ratios, before a byte is inflated."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise AnnotationError(f"the zip has {len(infos)} members; an annotation set has at most {MAX_MEMBERS}")
    total, members = 0, []
    for info in infos:
        if info.filename in (FOLDER, SET_FILE):
            continue
        match = MEMBER.fullmatch(info.filename)
        if match is None:
            raise AnnotationError(f"'{info.filename[:80]}' is no file of an annotation set (expected "
                                  f"{FOLDER}NNN-name.png, .labels.png, .latent.safetensors, .json)")
        if info.flag_bits & 0x1:
            raise AnnotationError(f"{info.filename}: encrypted members are not read")
        limit = KINDS[match.group(2)]
        if info.file_size > limit:
            raise AnnotationError(f"{info.filename} is {info.file_size} bytes; the limit is {limit}")
        if info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise AnnotationError(f"{info.filename} inflates {info.file_size // max(info.compress_size, 1)}-fold: "
                                  "refused as a zip bomb")
        total += info.file_size
        members.append(info)
    if total > MAX_TOTAL_BYTES:
        raise AnnotationError(f"the zip unpacks to {total / 2**30:.1f} GiB; the limit is "
                              f"{MAX_TOTAL_BYTES // 2**30} GiB")
    return members


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes, never more than it declared (a lying header is caught here)."""
    with zf.open(info) as f:
        data = f.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise AnnotationError(f"{info.filename}: its size does not match the zip directory")
    return data


def _picture(data: bytes, shape: tuple[int, ...], mode: str, what: str) -> np.ndarray:
    try:
        picture = Image.open(io.BytesIO(data))
        if picture.size != (shape[1], shape[0]):
            raise AnnotationError(f"{what} is {picture.width}x{picture.height}; this model's are {shape[1]}x{shape[0]}")
        return np.asarray(picture.convert(mode))
    except (UnidentifiedImageError, OSError) as exc:
        raise AnnotationError(f"{what} is not a readable PNG ({exc})") from exc


def _decode(store: AnnotationStore, info: zipfile.ZipInfo, data: bytes, entry: _Incoming) -> None:
    suffix, what, size = MEMBER.fullmatch(info.filename).group(2), info.filename, store.size
    if suffix == ".png":
        entry.image = _picture(data, (size, size, 3), "RGB", what)
    elif suffix == LABELS_SUFFIX:
        labels = _picture(data, (size, size), "L", what)
        if labels.max() >= len(store.bundle.classes):
            raise AnnotationError(f"{what} has class id {int(labels.max())}; this model has "
                                  f"{len(store.bundle.classes)} classes")
        entry.labels = labels
    elif suffix == LATENT_SUFFIX:
        try:
            entry.latent = latent_from_bytes(data, what, store.bundle.id, store.latent_shape or None)
        except LatentError as exc:
            raise AnnotationError(str(exc)) from exc
    elif suffix == META_SUFFIX:
        try:
            meta = json.loads(data)
        except ValueError as exc:
            raise AnnotationError(f"{what} is not JSON ({exc})") from exc
        entry.meta = meta if isinstance(meta, dict) else {}


def _check_set(zf: zipfile.ZipFile, store: AnnotationStore) -> None:
    if SET_FILE not in zf.namelist():
        return
    info = zf.getinfo(SET_FILE)
    if info.file_size > MAX_META_BYTES:
        raise AnnotationError(f"{SET_FILE} is too large")
    try:
        described = json.loads(_read_member(zf, info))
    except ValueError as exc:
        raise AnnotationError(f"{SET_FILE} is not JSON ({exc})") from exc
    classes = [c.name for c in store.bundle.classes]
    if isinstance(described, dict) and described.get("classes") not in (None, classes):
        raise AnnotationError(f"these annotations use the classes {described.get('classes')}, but this model has "
                              f"{classes}")


def read_zip(path: Path, store: AnnotationStore) -> dict[str, _Incoming]:
    """Every entry of the zip, decoded and checked against the store's bundle; raises on the first problem."""
    path = Path(path)
    if path.stat().st_size > MAX_ZIP_BYTES:
        raise AnnotationError(f"the zip is larger than {MAX_ZIP_BYTES // 2**20} MiB")
    try:
        with zipfile.ZipFile(path) as zf:
            _check_set(zf, store)
            entries: dict[str, _Incoming] = {}
            for info in _check_directory(zf):
                name = MEMBER.fullmatch(info.filename).group(1)
                _decode(store, info, _read_member(zf, info), entries.setdefault(name, _Incoming()))
    except zipfile.BadZipFile as exc:
        raise AnnotationError(f"not a zip file ({exc})") from exc
    if not entries:
        raise AnnotationError("the zip holds no annotations")
    for name, entry in entries.items():
        missing = [k for k, v in (("image", entry.image), ("latent", entry.latent)) if v is None]
        if missing:
            raise AnnotationError(f"annotation '{name}' lacks its {' and '.join(missing)}")
    return entries


def import_zip(store: AnnotationStore, path: Path) -> list[Entry]:
    """Add the zip's entries to the set (new names); nothing is written unless every member is good."""
    entries = read_zip(path, store)
    if len(store.names()) + len(entries) > 1000:
        raise AnnotationError("importing these would take the set over its limit of 1000 images")
    added = []
    for name, entry in sorted(entries.items()):
        source = (entry.meta or {}).get("source")
        source = source if isinstance(source, dict) and len(json.dumps(source)) < 2048 else {}
        tag = name.split("-", 1)[1]
        new = store.add(entry.image, entry.latent.latent, {**source, "imported_as": name}, tag)
        added.append(store.save_labels(new.name, entry.labels) if entry.labels is not None else new)
    return added
