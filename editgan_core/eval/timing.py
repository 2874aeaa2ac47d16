"""Wall-clock timing shared by the speed benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1,
                device: torch.device | None = None) -> float:
    """Median wall time of ``fn()`` in seconds after ``warmup`` untimed calls.

    The median, because this shared box has bursts of other work; on CUDA the device is synchronised
    around each call, so kernels queued by ``fn`` are counted.
    """

    def sync() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
