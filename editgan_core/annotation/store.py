"""The annotation set of one bundle: a folder of images, their W+ latents and the label maps painted on them.

One entry per image, as files a person can read and other tools can use (the layout of
``annotation.folder``): ``NAME.png`` (the image), ``NAME.latent.safetensors`` (its W+ latent: a
generated sample keeps its own, a photo is embedded once when added), ``NAME.labels.png`` (class ids as
grey values), ``NAME.preview.png`` (the same in the class colours) and ``NAME.json`` (where it came
from, when it was labelled). An entry with a label map is done; the rest are still to paint, so a set
is resumed simply by opening the folder again. Writes are atomic and the folder is locked while names
are handed out, so two pages annotating one model cannot take the same name.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import torch
from PIL import Image

from editgan_core.annotation.folder import LABELS_SUFFIX, LATENT_SUFFIX, PREVIEW_SUFFIX
from editgan_core.bundle import Bundle
from editgan_core.latents import LatentFile, load_latent, save_latent
from editgan_core.pipeline import InputError
from editgan_core.utils import atomic_write
from editgan_core.vectors.location import bundle_user_dir

FOLDER = "annotations"
LOCK_FILE = ".lock"
LOCK_TIMEOUT_S = 30.0
ENTRY_NAME = re.compile(r"^[0-9]{3,6}-[a-z0-9_-]{1,40}$")
MAX_ENTRIES = 1000  # EditGAN needs 16; a thousand is a dataset, not an annotation set
META_SUFFIX = ".json"


class AnnotationError(InputError):
    """An annotation action that cannot be done; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One image of the set and what is known about it (``meta``: its JSON)."""

    name: str
    meta: dict[str, Any]
    done: bool  # has a saved label map


@dataclass(frozen=True)
class SetProgress:
    done: int
    total: int

    def __str__(self) -> str:
        return f"{self.done} of {self.total} done"


def annotations_dir(bundle: Bundle) -> Path:
    """Where a bundle's annotations live: ``<bundle>/annotations``, or under ``EDITGAN_HOME`` when that is set
    (a Space's persistent disk) or the bundle cannot keep user files (read-only, a Hub snapshot, site-packages)."""
    return bundle_user_dir(bundle.id, bundle.root, bundle.root / FOLDER, FOLDER)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class AnnotationStore:
    """A bundle's annotation folder: add images, save label maps, list progress, read the training set."""

    def __init__(self, folder: Path, bundle: Bundle) -> None:
        self.folder = Path(folder)
        self.bundle = bundle
        self.size = bundle.resolution
        self.latent_shape = tuple(bundle.manifest.get("latent_shape") or ())
        self._lock = filelock.FileLock(self.folder / LOCK_FILE, timeout=LOCK_TIMEOUT_S)

    @classmethod
    def for_bundle(cls, bundle: Bundle) -> AnnotationStore:
        return cls(annotations_dir(bundle), bundle)

    # -- reading ------------------------------------------------------------------------------
    def path(self, name: str, suffix: str) -> Path:
        if not ENTRY_NAME.fullmatch(name):
            raise AnnotationError(f"'{name}' is not an annotation of this set")
        return self.folder / f"{name}{suffix}"

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name[: -len(META_SUFFIX)] for p in self.folder.glob(f"*{META_SUFFIX}")
                      if ENTRY_NAME.fullmatch(p.name[: -len(META_SUFFIX)]))

    def entry(self, name: str) -> Entry:
        path = self.path(name, META_SUFFIX)
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise AnnotationError(f"annotation '{name}' cannot be read: {exc}") from exc
        return Entry(name, meta if isinstance(meta, dict) else {}, self.path(name, LABELS_SUFFIX).is_file())

    def entries(self) -> list[Entry]:
        return [self.entry(n) for n in self.names()]

    def progress(self) -> SetProgress:
        entries = self.entries()
        return SetProgress(sum(e.done for e in entries), len(entries))

    def image(self, name: str) -> np.ndarray:
        with Image.open(self.path(name, ".png")) as picture:
            return np.asarray(picture.convert("RGB"))

    def latent(self, name: str) -> torch.Tensor:
        return load_latent(self.path(name, LATENT_SUFFIX), expect_bundle_id=self.bundle.id,
                           expect_shape=self.latent_shape or None).latent

    def labels(self, name: str) -> np.ndarray | None:
        path = self.path(name, LABELS_SUFFIX)
        if not path.is_file():
            return None
        with Image.open(path) as picture:
            return np.asarray(picture.convert("L"))

    def training_set(self) -> list[tuple[str, torch.Tensor, np.ndarray]]:
        """(name, latent, label map) of every done entry, in name order."""
        return [(e.name, self.latent(e.name), self.labels(e.name)) for e in self.entries() if e.done]

    # -- writing ------------------------------------------------------------------------------
    def _next_name(self, tag: str) -> str:
        numbers = [int(n.split("-", 1)[0]) for n in self.names()]
        if len(numbers) >= MAX_ENTRIES:
            raise AnnotationError(f"the set already has {len(numbers)} images; the limit is {MAX_ENTRIES}")
        tag = re.sub(r"[^a-z0-9_-]+", "-", tag.lower()).strip("-")[:40] or "image"
        return f"{max(numbers, default=0) + 1:03d}-{tag}"

    def add(self, image: np.ndarray, latent: torch.Tensor, source: dict[str, Any], tag: str) -> Entry:
        """A new entry from an image at the model's resolution and its W+ latent; ``source`` says where it came from."""
        image = np.asarray(image, dtype=np.uint8)
        if image.shape != (self.size, self.size, 3):
            raise AnnotationError(f"the image is {image.shape}; this model's images are ({self.size}, {self.size}, 3)")
        item = LatentFile(latent=latent, bundle_id=self.bundle.id, source=source)
        if self.latent_shape and item.latent_shape != self.latent_shape:
            raise AnnotationError(f"the latent is {item.latent_shape}; this model's are {self.latent_shape}")
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            name = self._next_name(tag)
            atomic_write(self.path(name, ".png"), lambda p: Image.fromarray(image).save(p, format="PNG"))
            save_latent(item, self.path(name, LATENT_SUFFIX))
            meta = {"name": name, "source": source, "added": _now()}
            self._write_meta(name, meta)  # last: an entry is listed once its files are all there
        return Entry(name, meta, False)

    def _write_meta(self, name: str, meta: dict[str, Any]) -> None:
        atomic_write(self.path(name, META_SUFFIX), lambda p: p.write_text(json.dumps(meta, indent=1) + "\n"))

    def save_labels(self, name: str, labels: np.ndarray) -> Entry:
        """Store the painted label map (grey ids and a colour preview); the entry counts as done."""
        entry = self.entry(name)
        labels = np.asarray(labels)
        if labels.shape != (self.size, self.size):
            raise AnnotationError(f"the label map is {labels.shape}; this model's are ({self.size}, {self.size})")
        if labels.min() < 0 or labels.max() >= len(self.bundle.classes):
            raise AnnotationError(f"the label map has class ids outside 0..{len(self.bundle.classes) - 1}")
        ids = labels.astype(np.uint8)
        atomic_write(self.path(name, LABELS_SUFFIX), lambda p: Image.fromarray(ids, "L").save(p, format="PNG"))
        preview = self.bundle.palette[ids]
        atomic_write(self.path(name, PREVIEW_SUFFIX), lambda p: Image.fromarray(preview).save(p, format="PNG"))
        counts = np.bincount(ids.ravel(), minlength=len(self.bundle.classes))
        meta = {**entry.meta, "labelled": _now(), "classes": {c.name: int(counts[c.id]) for c in self.bundle.classes
                                                              if counts[c.id]}}
        self._write_meta(name, meta)
        return Entry(name, meta, True)

    def remove(self, name: str) -> None:
        """Delete an entry: its metadata first, so it is never listed half-removed."""
        with self._lock:
            for suffix in (META_SUFFIX, LABELS_SUFFIX, PREVIEW_SUFFIX, LATENT_SUFFIX, ".png"):
                self.path(name, suffix).unlink(missing_ok=True)
