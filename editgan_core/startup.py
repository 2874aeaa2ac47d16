"""The slow things a server does once at start-up instead of inside its first request.

- ``prepare_ops``: on a CUDA device the custom ops are compiled (or loaded from torch's extension cache,
  ``TORCH_EXTENSIONS_DIR``) now, with a log line saying how long it took; nothing on a CPU.
- ``prefetch_lpips``: when LPIPS weights are not on disk and the machine is online, fetch them into the
  LPIPS cache (``<EDITGAN_HOME>/lpips``): the VGG16 trunk from its published URL (torch hub cache), the
  heads from an installed ``lpips`` or ``torchmetrics`` wheel or their URL. Offline (``HF_HUB_OFFLINE``
  or no route to the URL) or with ``download=False`` it logs one line and the studio runs on L2 alone.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch

from editgan_core import losses
from editgan_core.hub import is_offline
from editgan_core.ops import backend

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 5.0


def prepare_ops(device: str | torch.device | None = None) -> float | None:
    """Build or load the CUDA ops for ``device`` (default: CUDA when available) now; seconds taken, or None
    when there is nothing to prepare (a CPU, or ``EDITGAN_OPS`` naming the native or reference ops)."""
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    impl = backend.requested_impl()
    if device.type != "cuda" or impl in ("native", "ref"):
        log.debug("ops: nothing to prepare on %s (EDITGAN_OPS=%s)", device, impl)
        return None
    from editgan_core.ops import cuda_ext

    start = time.perf_counter()
    ready = cuda_ext.available(strict=impl == "cuda")
    took = time.perf_counter() - start
    if ready:
        log.info("CUDA ops ready on %s in %.1f s (compiled, or loaded from torch's extension cache)", device, took)
    else:
        log.warning("CUDA ops unavailable on %s (%.1f s); the native PyTorch ops are used", device, took)
    return took


def _reachable(url: str, timeout: float) -> str | None:
    """None when ``url`` answers, else why not (one short phrase)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


def prefetch_lpips(download: bool = True, timeout: float = PROBE_TIMEOUT_S) -> Path | None:
    """The LPIPS weight file on disk after fetching it if needed and allowed; None (with one log line) if none.

    Never raises: a studio without LPIPS falls back to L2.
    """
    files = losses.local_weight_files()
    if files:
        log.info("LPIPS weights: %s", ", ".join(str(f) for f in files))
        return files[0]
    how = f"L2 only until `{losses.DOWNLOAD_COMMAND}` has run"
    if not download:
        log.info("LPIPS weights not on disk and not downloaded (--no-download): %s", how)
        return None
    reason = "HF_HUB_OFFLINE is set" if is_offline() else _reachable(losses.VGG16_URL, timeout)
    if reason is not None:
        log.info("LPIPS weights not on disk and not downloaded (offline: %s): %s", reason, how)
        return None
    start = time.perf_counter()
    try:
        path = losses.LPIPS.download(losses.weights_cache())
    except Exception as exc:  # network, disk or hash failure: the studio still runs on L2
        log.warning("LPIPS download failed (%s: %s): %s", type(exc).__name__, exc, how)
        return None
    log.info("LPIPS weights downloaded to %s in %.0f s", path, time.perf_counter() - start)
    return path


def prepare(device: str | torch.device | None = None, download: bool = True) -> None:
    """Everything above, in the order a server wants it."""
    prepare_ops(device)
    prefetch_lpips(download)
