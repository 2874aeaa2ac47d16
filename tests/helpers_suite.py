"""Helpers for the test modules (no tests here): repository paths and the tiny bundles conftest.py serves.

A tiny bundle takes seconds to make, so one per session is kept in pytest's cache across runs, keyed on the
code that writes it (all of ``editgan_core``) and checked on each use: a cached copy that a test changed, or
one from other code, is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from filelock import FileLock

from editgan_core.testing import make_tiny_bundle

REPO = Path(__file__).resolve().parents[1]
# EDITGAN_FIXTURES names the fixtures folder itself (the GPU run's carried copy); else ../shared/fixtures.
SHARED_FIXTURES = Path(os.environ.get("EDITGAN_FIXTURES")
                       or Path(os.environ.get("EDITGAN_SHARED", REPO.parent / "shared")) / "fixtures")
EXAMPLE = REPO / "webapp" / "examples" / "face_003.png"
STAMP = "fingerprint.json"


def source_key() -> str:
    """Digest of the code that writes a tiny bundle (every core module and the torch version)."""
    digest = hashlib.sha1(torch.__version__.encode())
    core = REPO / "editgan_core"
    for path in sorted(core.rglob("*.py")):
        digest.update(path.relative_to(core).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def fingerprint(root: Path) -> dict[str, list[int]]:
    """Every file of a folder with its size and modification time: any write changes it."""
    return {p.relative_to(root).as_posix(): [p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(root.rglob("*")) if p.is_file()}


def ensure_tiny_bundle(folder: Path, bundle_id: str = "tiny-test", seed: int = 0) -> Path:
    """``folder/<bundle_id>``, made unless a whole, unchanged copy is there (a lock keeps parallel workers out)."""
    folder.mkdir(parents=True, exist_ok=True)
    root, stamp = folder / bundle_id, folder / STAMP
    with FileLock(folder / ".lock"):
        if root.is_dir() and stamp.is_file() and json.loads(stamp.read_text()) == fingerprint(root):
            return root
        shutil.rmtree(root, ignore_errors=True)
        make_tiny_bundle(root, seed=seed, bundle_id=bundle_id)
        stamp.write_text(json.dumps(fingerprint(root)))
    return root
