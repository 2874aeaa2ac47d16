"""The launcher (app.py, editgan-studio): where it binds, which bundle it starts on, when it refuses to start."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from editgan_core.bundle import list_bundles
from webapp import launch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def prepared(monkeypatch: pytest.MonkeyPatch) -> list:
    """Start-up work recorded instead of done (no CUDA here, no network)."""
    calls: list = []
    monkeypatch.setattr(launch.startup, "prepare", lambda device, download: calls.append((device, download)))
    return calls


def test_binds_where_a_space_says_and_ignores_wrapper_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EDITGAN_BUNDLE", "EDITGAN_FALLBACK_BUNDLE", "EDITGAN_NO_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    args = launch.parse_args(["--some-wrapper-flag", "x"])
    assert (args.host, args.port, args.bundle, args.fallback_bundle, args.no_download) == ("0.0.0.0", 7861, None,
                                                                                         None, False)
    monkeypatch.setenv("EDITGAN_BUNDLE", "someone/faces@v2")
    monkeypatch.setenv("EDITGAN_FALLBACK_BUNDLE", "faces64")
    monkeypatch.setenv("EDITGAN_NO_DOWNLOAD", "1")
    args = launch.parse_args(["--port", "9000"])
    assert (args.port, args.bundle, args.fallback_bundle, args.no_download) == (9000, "someone/faces@v2", "faces64",
                                                                                True)


def test_a_bundle_that_cannot_load_stops_the_app_with_the_reason(tmp_path: Path, prepared: list) -> None:
    args = launch.parse_args(["--bundle", str(tmp_path / "nothing-here")])
    with pytest.raises(launch.StartupError, match=r"cannot load bundle .*nothing-here.*no bundle at"):
        launch.create_demo(args)
    with pytest.raises(SystemExit, match="editgan-studio: cannot load bundle"):
        launch.create_demo_or_exit(args)
    assert prepared == []  # nothing slow was started for a bundle that is not there


def test_a_broken_component_stops_it_too(tmp_path: Path, tiny_bundle: Path, prepared: list) -> None:
    broken = shutil.copytree(tiny_bundle, tmp_path / "broken")
    (broken / "generator.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(launch.StartupError, match="cannot load bundle"):
        launch.create_demo(launch.parse_args(["--bundle", str(broken)]))


def test_the_fallback_is_used_only_when_asked_for(tmp_path: Path, tiny_bundle: Path, prepared: list,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    args = launch.parse_args(["--bundle", str(tmp_path / "missing"), "--fallback-bundle", str(tiny_bundle),
                              "--no-download", "--device", "cpu"])
    with caplog.at_level(logging.WARNING, logger="webapp.launch"):
        demo = launch.create_demo(args)
    assert demo.studio.registry.default_id == "tiny-test"
    assert "missing" in caplog.text and "no bundle at" in caplog.text and "fallback" in caplog.text
    assert prepared == [("cpu", False)]
    args.fallback_bundle = str(tmp_path / "also-missing")
    with pytest.raises(launch.StartupError, match=r"the fallback .*also-missing.* cannot be loaded either"):
        launch.create_demo(args)


def test_the_named_bundle_comes_first(tmp_path: Path, tiny_bundle: Path, prepared: list) -> None:
    demo = launch.create_demo(launch.parse_args(["--bundle", str(tiny_bundle), "--device", "cpu"]))
    assert demo.studio.registry.ids[0] == "tiny-test"
    assert demo.studio.registry.scan is list_bundles  # the picker's rescan looks in the checkpoint folders
    assert prepared == [("cpu", True)]


@pytest.mark.slow
def test_app_py_refuses_to_start_on_a_missing_bundle(tmp_path: Path) -> None:
    """The Space entry point itself: exit status 1 and the reason, no traceback, no page on another model."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EDITGAN_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, str(REPO / "app.py"), "--bundle", "someone/not-cached"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "HF_HUB_OFFLINE is set and someone/not-cached is not in the Hugging Face cache" in done.stderr
    assert "Traceback" not in done.stderr
