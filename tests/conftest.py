"""Shared fixtures: paths to ../shared/fixtures and small deterministic models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# EDITGAN_FIXTURES names the fixtures folder itself (the GPU run's carried copy); else ../shared/fixtures.
SHARED_FIXTURES = Path(os.environ.get("EDITGAN_FIXTURES")
                       or Path(os.environ.get("EDITGAN_SHARED", REPO.parent / "shared")) / "fixtures")

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
