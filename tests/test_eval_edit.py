"""The edit benchmark's step timing counts whole steps and pairs each round with its own forward timing."""

from __future__ import annotations

import dataclasses
import itertools
from types import SimpleNamespace

import pytest

from editgan_core.eval import edit as eval_edit
from editgan_core.pipeline import EditGANPipeline
from editgan_core.vectors.fileformat import load_vector, save_vector


def test_edit_step_ratio_counts_whole_steps(tiny_bundle, monkeypatch):
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
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
    monkeypatch.setattr(eval_edit.time, "perf_counter", lambda: float(next(ticks)))
    step, forward_time, ratio = eval_edit.edit_step_ratio(pipe, latent, painted, forward, rounds=3, steps=8)
    assert (step, forward_time, ratio) == (1.0, 1.0, 1.0)
    assert steps_seen == [9, 9, 9] and len(forwards) == 3 * 6  # one warm-up and five timed forwards a round


def test_success_needs_the_margin_towards_the_target_or_to_be_near_it():
    test = eval_edit.SuccessTest(before=-0.5, value=1.0, sign=1.0, margin=0.3)
    assert test.passes(-0.2) and not test.passes(-0.21)  # moved by the margin towards the target
    assert not test.passes(-0.8)  # moved away
    frown = eval_edit.SuccessTest(before=0.9, value=-1.0, sign=-1.0, margin=0.3)
    assert frown.passes(0.6) and not frown.passes(0.7)
    already = eval_edit.SuccessTest(before=0.8, value=1.0, sign=1.0, margin=0.3)
    assert already.passes(0.85)  # within the margin of the target, though it barely moved


def test_attribute_spread_reads_samples_and_renders(tiny_bundle):
    import numpy as np

    from editgan_core.domains import faces

    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)

    class MeanJudge:  # reads "smile" as the image's mean brightness
        def predict(self, images):
            return {"smile": images.mean(dim=(1, 2, 3))}

    spread, render_spread = eval_edit.attribute_spread(pipe, MeanJudge(), faces, "smile", n=6)
    brightness = [faces.render(faces.sample_attributes(s), pipe.resolution).image.astype(np.float32).mean()
                  for s in range(6)]
    assert abs(render_spread - np.std(np.array(brightness) / 127.5)) < 1e-3  # images read in [-1, 1]
    assert spread > 0 and np.isfinite(spread)


def test_the_benchmark_applies_a_vector_at_its_own_default_strength(tiny_bundle_copy, monkeypatch):
    path = tiny_bundle_copy / "vectors" / "smile.safetensors"
    save_vector(dataclasses.replace(load_vector(path), default_scale=1.25), path)
    used = []

    class Stop(Exception):
        pass

    def capture(pipeline, judge, domain, spec, vector, scale, *rest):
        used.append(scale)
        raise Stop

    monkeypatch.setattr(eval_edit, "EditBenchmark", capture)
    judge = SimpleNamespace(eval=lambda: None)
    monkeypatch.setattr(eval_edit, "AttributeNet", SimpleNamespace(load=lambda path: judge))
    for extra in ([], ["--scale", "2"]):
        with pytest.raises(Stop):
            eval_edit.main(["--bundle", str(tiny_bundle_copy), "--device", "cpu", "--vector", "smile", "--n", "1",
                            *extra])
    assert used == [1.25, 2.0]
