"""The memory benchmark's peak-RSS reading sees an allocation made inside the measured call."""

from __future__ import annotations

import os

import pytest
import torch

from editgan_core.eval.segmenter_memory import measure_peak

pytestmark = pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                                reason="needs Linux's /proc/self/clear_refs")


def test_measure_peak_sees_a_temporary_allocation():
    mib = 2**20

    def allocate_and_free() -> float:
        block = torch.ones(64 * mib // 4)  # 64 MiB, touched, freed on return
        return float(block[0])

    result, extra, wall, cpu = measure_peak(allocate_and_free)
    assert result == 1.0 and wall >= 0 and cpu >= 0
    assert 60 * mib < extra < 200 * mib
