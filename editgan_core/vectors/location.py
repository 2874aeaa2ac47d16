"""Where a bundle's user vectors live, so that what the studio saves is still there after a restart.

The first rule that applies names the user folder (presets stay in the bundle's ``vectors_dir``,
read-only, in every case):

1. ``EDITGAN_HOME`` is set: ``$EDITGAN_HOME/vectors/<bundle id>`` — the operator's choice, e.g. a
   Space's persistent disk, or a test run's temporary folder;
2. the bundle folder can be written and no installer owns it: ``<bundle>/<user_vectors_dir>``, a
   folder beside the presets named by the manifest (default ``user_vectors``), so the bundle and
   what was made with it travel together;
3. otherwise (an installed package, a Hugging Face Hub snapshot, a read-only disk):
   ``~/.cache/editgan-studio/vectors/<bundle id>`` (``$XDG_CACHE_HOME`` is honoured).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from editgan_core.paths import ENV_HOME, editgan_home
from editgan_core.vectors.library import VectorLibrary
from editgan_core.vectors.vector import VectorError

MANIFEST_KEY = "user_vectors_dir"
DEFAULT_USER_DIR = "user_vectors"
_HUB_REPO_PREFIXES = ("models--", "datasets--", "spaces--")  # huggingface_hub's cache layout: <prefix>org--name
MANIFEST = "manifest.json"  # editgan_core.bundle.MANIFEST, not imported so that bundle.py may import this package
MAX_MANIFEST_BYTES = 1024 * 1024


def _folder_name(bundle_id: str) -> str:
    """A file-system-safe folder name for a bundle id; ids that needed changing get a hash, so none collide."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", bundle_id).strip("._")[:80]
    if safe == bundle_id:
        return safe
    return f"{safe or 'bundle'}-{hashlib.sha1(bundle_id.encode()).hexdigest()[:8]}"


def _installer_owned(folder: Path) -> bool:
    """Site-packages and Hub snapshots are replaced wholesale on upgrade: user files there would vanish."""
    folder = folder.resolve()
    if any(p.name == "snapshots" and p.parent.name.startswith(_HUB_REPO_PREFIXES) for p in folder.parents):
        return True
    site = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    return any(s == folder or s in folder.parents for s in site)


def _writable(folder: Path) -> bool:
    """Whether files can be created in ``folder``, or in the folder that would hold it."""
    while not folder.exists():
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


def _user_dir_in_bundle(bundle_root: Path, manifest: Mapping, presets_dir: Path | None) -> Path:
    value = manifest.get(MANIFEST_KEY, DEFAULT_USER_DIR)
    where = f"bundle '{manifest.get('id')}': {MANIFEST_KEY}"
    if not isinstance(value, str) or not value.strip():
        raise VectorError(f"{where} must be a folder name, got {value!r}")
    rel = PurePosixPath(value.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or re.match(r"^[A-Za-z]:", value):
        raise VectorError(f"{where} must be a folder inside the bundle, got '{value}'")
    folder = bundle_root / rel
    if presets_dir is not None and folder.resolve() == presets_dir.resolve():
        raise VectorError(f"{where} names the presets folder '{value}'; user vectors need a folder of their own")
    return folder


def bundle_user_dir(bundle_id: str, bundle_root: Path, inside: Path, kind: str) -> Path:
    """Where user files of one ``kind`` (vectors, annotations, preset pairs) for a bundle live, by the rules
    in the module docstring: ``inside`` (a folder in the bundle) unless ``EDITGAN_HOME`` is set or the bundle
    cannot keep user files; then ``<EDITGAN_HOME>/<kind>/<bundle id made safe>``."""
    if not os.environ.get(ENV_HOME) and not _installer_owned(bundle_root) and _writable(inside):
        return inside
    return editgan_home() / kind / _folder_name(bundle_id)


def user_library_dir(bundle_id: str, bundle_root: Path | None = None, manifest: Mapping | None = None,
                     presets_dir: Path | None = None) -> Path:
    """The folder the user's vectors for this bundle are saved in (rules in the module docstring)."""
    if not os.environ.get(ENV_HOME) and bundle_root is not None:
        inside = _user_dir_in_bundle(bundle_root, manifest or {}, presets_dir)
        return bundle_user_dir(bundle_id, bundle_root, inside, "vectors")
    return editgan_home() / "vectors" / _folder_name(bundle_id)


def _owning_manifest(presets_dir: Path, bundle_id: str) -> tuple[Path, dict] | tuple[None, None]:
    """The bundle folder above ``presets_dir`` whose manifest has this id, and that manifest."""
    for folder in presets_dir.resolve().parents:
        path = folder / MANIFEST
        if not path.is_file():
            continue
        try:
            with open(path, "rb") as f:
                manifest = json.loads(f.read(MAX_MANIFEST_BYTES))
        except (OSError, ValueError):
            return None, None
        if isinstance(manifest, dict) and manifest.get("id") == bundle_id:
            return folder, manifest
        return None, None  # the nearest manifest belongs to another bundle
    return None, None


def open_library(bundle_id: str, latent_shape: Sequence[int], presets_dir: str | Path | None = None) -> VectorLibrary:
    """The vector library the studio and the CLI share for one bundle: the presets in ``presets_dir``
    (the bundle's ``vectors_dir``) over the persistent user folder chosen by ``user_library_dir``."""
    presets = Path(presets_dir) if presets_dir is not None else None
    root, manifest = _owning_manifest(presets, bundle_id) if presets is not None else (None, None)
    user = user_library_dir(bundle_id, root, manifest, presets)
    library = VectorLibrary(user, bundle_id, latent_shape, read_only_roots=[presets] if presets is not None else [])
    library.remove_leftovers()
    return library
