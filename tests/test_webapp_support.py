"""Helpers shared by the webapp test modules (no tests here): a cached tiny bundle, example paths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import editgan_core.testing
from editgan_core.testing import make_tiny_bundle

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "webapp" / "examples" / "face_003.png"


def cached_tiny_bundle(config: pytest.Config, tmp_factory: pytest.TempPathFactory, bundle_id: str = "tiny-test",
                       seed: int = 0) -> Path:
    """A tiny bundle shared by the webapp test modules and runs (it takes seconds to make), kept in pytest's
    cache and rebuilt when editgan_core/testing.py changes."""
    key = hashlib.sha1(Path(editgan_core.testing.__file__).read_bytes()).hexdigest()[:12]
    try:
        root = Path(config.cache.mkdir(f"webapp-{bundle_id}-{seed}-{key}")) / bundle_id
    except AttributeError:  # cache plugin disabled
        root = tmp_factory.mktemp("bundle") / bundle_id
    if not (root / "manifest.json").is_file():
        make_tiny_bundle(root, seed=seed, bundle_id=bundle_id)
    return root
