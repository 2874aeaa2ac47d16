"""Shared fixtures: paths to ../shared/fixtures, a home folder per test, the tiny bundles built once a session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers_suite import SHARED_FIXTURES, ensure_tiny_bundle, fingerprint, source_key

# Tests run many tiny ops: one thread avoids oversubscription overhead and keeps results deterministic.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def editgan_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Vectors saved by a test go to a folder of its own: never into a cached test bundle, the shipped bundle
    or the user's cache, and no test sees another's."""
    home = tmp_path_factory.mktemp("editgan-home")
    monkeypatch.setenv("EDITGAN_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED_FIXTURES} (set EDITGAN_FIXTURES or EDITGAN_SHARED)")
    return SHARED_FIXTURES


def _session_bundle(config: pytest.Config, factory: pytest.TempPathFactory, bundle_id: str,
                    seed: int) -> Iterator[Path]:
    """A tiny bundle in pytest's cache (a temporary folder without the cache plugin), checked untouched at the end."""
    cache = getattr(config, "cache", None)
    folder = (Path(cache.mkdir(f"tiny-bundle-{bundle_id}-{seed}-{source_key()}")) if cache is not None
              else factory.mktemp(bundle_id))
    root = ensure_tiny_bundle(folder, bundle_id, seed)
    before = fingerprint(root)
    yield root
    assert fingerprint(root) == before, f"a test wrote into the shared bundle {root}: use tiny_bundle_copy"


@pytest.fixture(scope="session")
def tiny_bundle(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny random bundle (faces classes, segmenter, encoder, two presets), shared read-only by all tests."""
    yield from _session_bundle(pytestconfig, tmp_path_factory, "tiny-test", 0)


@pytest.fixture(scope="session")
def other_tiny_bundle(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A second tiny model (other id and weights), for switching models."""
    yield from _session_bundle(pytestconfig, tmp_path_factory, "tiny-other", 1)


@pytest.fixture
def tiny_bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A test's own copy of the tiny bundle, for tests that change a bundle's files."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / tiny_bundle.name))
