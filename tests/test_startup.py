"""Start-up work (CUDA ops, LPIPS weights) and logging, with stand-ins for the GPU and the network."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

from editgan_core import losses, startup
from editgan_core.ops import cuda_ext

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_weights(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """No LPIPS file anywhere, and a download that must not happen unless a test allows it."""
    monkeypatch.setattr(losses, "DEFAULT_SEARCH_DIRS", ())
    monkeypatch.setattr(losses, "_lpips_package_dir", lambda package="lpips": None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def forbidden(dest):
        raise AssertionError("downloaded although it should not have")

    monkeypatch.setattr(losses.LPIPS, "download", staticmethod(forbidden))


def test_ops_are_not_prepared_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_ext, "available", lambda strict=False: pytest.fail("built on a CPU"))
    assert startup.prepare_ops("cpu") is None
    monkeypatch.setenv("EDITGAN_OPS", "native")
    assert startup.prepare_ops("cuda") is None


def test_ops_are_built_once_at_start_up_with_the_time_logged(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    calls = []
    monkeypatch.setattr(cuda_ext, "available", lambda strict=False: calls.append(strict) or True)
    monkeypatch.delenv("EDITGAN_OPS", raising=False)
    with caplog.at_level(logging.INFO, logger="editgan_core.startup"):
        took = startup.prepare_ops("cuda:0")
    assert calls == [False] and took is not None and took >= 0
    assert "CUDA ops ready on cuda:0 in" in caplog.text
    monkeypatch.setattr(cuda_ext, "available", lambda strict=False: False)
    with caplog.at_level(logging.INFO, logger="editgan_core.startup"):
        startup.prepare_ops(torch.device("cuda"))
    assert "CUDA ops unavailable on cuda" in caplog.text and "native PyTorch ops are used" in caplog.text


def test_lpips_already_on_disk_is_only_reported(tmp_path, no_weights, monkeypatch, caplog) -> None:
    monkeypatch.setattr(losses, "DEFAULT_SEARCH_DIRS", (tmp_path,))
    (tmp_path / losses.WEIGHTS_FILE).write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="editgan_core.startup"):
        assert startup.prefetch_lpips() == tmp_path / losses.WEIGHTS_FILE
    assert "LPIPS weights:" in caplog.text


def test_no_download_skips_with_one_line(no_weights, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="editgan_core.startup"):
        assert startup.prefetch_lpips(download=False) is None
    assert len(caplog.records) == 1 and "--no-download" in caplog.text and "L2 only" in caplog.text


def test_offline_skips_with_one_line(no_weights, monkeypatch, caplog) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(startup.urllib.request, "urlopen", lambda *a, **k: pytest.fail("probed while offline"))
    with caplog.at_level(logging.INFO, logger="editgan_core.startup"):
        assert startup.prefetch_lpips() is None
    assert len(caplog.records) == 1 and "offline: HF_HUB_OFFLINE is set" in caplog.text
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def unreachable(request, timeout):
        assert request.full_url == losses.VGG16_URL and request.get_method() == "HEAD" and timeout <= 10
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(startup.urllib.request, "urlopen", unreachable)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="editgan_core.startup"):
        assert startup.prefetch_lpips() is None
    assert len(caplog.records) == 1 and "offline: Name or service not known" in caplog.text


def test_online_downloads_into_the_cache_and_failures_degrade(no_weights, monkeypatch, caplog) -> None:
    class Answer:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(startup.urllib.request, "urlopen", lambda request, timeout: Answer())
    written = []

    def download(dest):
        written.append(dest)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / losses.WEIGHTS_FILE).write_bytes(b"")
        return dest / losses.WEIGHTS_FILE

    monkeypatch.setattr(losses.LPIPS, "download", staticmethod(download))
    with caplog.at_level(logging.INFO, logger="editgan_core.startup"):
        path = startup.prefetch_lpips()
    assert written == [losses.weights_cache()] and path == losses.weights_cache() / losses.WEIGHTS_FILE
    assert str(losses.weights_cache()).startswith(os.environ["EDITGAN_HOME"])  # the cache, not the package
    assert losses.local_weight_files() == [path]  # and the pipeline's lookup finds it there
    path.unlink()
    monkeypatch.setattr(losses.LPIPS, "download", staticmethod(lambda dest: (_ for _ in ()).throw(OSError("disk"))))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="editgan_core.startup"):
        assert startup.prefetch_lpips() is None
    assert "LPIPS download failed (OSError: disk)" in caplog.text


def test_heads_from_an_installed_torchmetrics_wheel(tmp_path, no_weights, monkeypatch) -> None:
    package = tmp_path / "torchmetrics"
    heads = package / "functional" / "image" / "lpips_models" / "vgg.pth"
    heads.parent.mkdir(parents=True)
    heads.write_bytes(b"")
    monkeypatch.setattr(losses, "_lpips_package_dir", lambda name="lpips": package if name == "torchmetrics" else None)
    assert losses._find_lpips_heads() == heads


def test_entry_points_log_info_lines(tmp_path) -> None:
    """setup_logging makes the core's INFO lines visible; EDITGAN_LOG_LEVEL quiets them."""
    code = ("import logging; from editgan_core.cli_common import setup_logging; setup_logging(); "
            "logging.getLogger('editgan_core.x').info('hello'); import warnings; warnings.warn('careful')")
    for level, shown in ((None, True), ("WARNING", False)):
        env = {k: v for k, v in os.environ.items() if k != "EDITGAN_LOG_LEVEL"}
        env["PYTHONPATH"] = str(REPO)
        if level:
            env["EDITGAN_LOG_LEVEL"] = level
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                              cwd=tmp_path, check=True)
        assert ("INFO editgan_core.x: hello" in done.stderr) == shown
        assert "WARNING py.warnings" in done.stderr and "careful" in done.stderr
