"""The fuzz and soak command's short run (``python -m webapp.fuzz`` for the long one): a served studio on the
tiny bundle gets every malformed input, a burst of refused calls and two sessions working side by side."""

from __future__ import annotations

import os

import pytest

from webapp.fuzz import run
from webapp.fuzz_client import BAD, OK, REFUSED
from webapp.ui import build_demo, launch_kwargs

pytestmark = pytest.mark.slow  # a served studio driven over HTTP


def test_short_fuzz_and_soak_has_no_bad_outcome(tiny_bundle):
    demo = build_demo([tiny_bundle], device="cpu")
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
    try:
        result = run(url, os.getpid(), minutes=0.15, clients=2, burst=3, settle_s=0.5)
    finally:
        demo.close()
    phases = result["phases"]
    bad = {p: {o: phases[p]["counts"][o] for o in BAD if phases[p]["counts"][o]} for p in phases}
    assert not any(bad.values()), (bad, {p: phases[p]["examples"] for p in phases})
    assert phases["malformed"]["counts"][REFUSED] >= 50 and phases["malformed"]["counts"][OK] >= 5
    assert phases["soak"]["counts"][OK] > 0 and phases["soak"]["latency"]["strength"]["n"] > 0
    assert result["memory_mb"]["peak"] is not None
