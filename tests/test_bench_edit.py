"""The edit benchmark's step timing counts whole steps and pairs each round with its own forward timing."""

from __future__ import annotations

import itertools

from editgan_core import bench_edit
from editgan_core.pipeline import EditGANPipeline
from editgan_core.testing import make_tiny_bundle


def test_edit_step_ratio_counts_whole_steps(tmp_path, monkeypatch):
    pipe = EditGANPipeline.from_pretrained(make_tiny_bundle(tmp_path / "tiny"), device="cpu", lpips=False)
    latent = pipe.sample_latent(0)
    labels = pipe.render(latent).labels
    painted = labels.copy()
    painted[:6] = (labels[:6] + 1) % len(pipe.bundle.classes)
    forwards, steps_seen = [], []

    def forward():
        forwards.append(1)

    real_learn = pipe.learn_edit

    def learn_edit(*args, steps, callback, **kwargs):
        steps_seen.append(steps)
        return real_learn(*args, steps=steps, callback=callback, **kwargs)

    monkeypatch.setattr(pipe, "learn_edit", learn_edit)
    # A clock that ticks once per reading: a forward lasts 1 tick, so does the gap between two steps.
    ticks = itertools.count()
    monkeypatch.setattr(bench_edit.time, "perf_counter", lambda: float(next(ticks)))
    step, forward_time, ratio = bench_edit.edit_step_ratio(pipe, latent, painted, forward, rounds=3, steps=8)
    assert (step, forward_time, ratio) == (1.0, 1.0, 1.0)
    assert steps_seen == [9, 9, 9] and len(forwards) == 3 * 6  # one warm-up and five timed forwards a round
