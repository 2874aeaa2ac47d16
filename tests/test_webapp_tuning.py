"""The studio's fidelity report and "High fidelity (pivotal tuning)": the session's tuned copy, its price,
edits on it, cancel, and dropping it with a new image."""

from __future__ import annotations

import time

import numpy as np
import pytest
from helpers_suite import EXAMPLE
from test_webapp_logic import _paint_eyebrows, box, studio  # noqa: F401 (fixtures)

from editgan_core.losses import image_psnr
from editgan_core.pipeline import InputError
from editgan_core.pti import PivotalTuner
from webapp import gpu_tasks
from webapp import labels as lab
from webapp.events.tuning import STEPS_KEY, tuning_cost
from webapp.outcomes import EditOutcome, EmbedOutcome, Notice, Progress, TuneOutcome


def test_an_embedding_reports_its_fidelity_and_prices_tuning(box, studio):  # noqa: F811
    session = studio.session(box)
    assert studio.tuning_estimate(session, 100) is None and "after an embedding" in tuning_cost(studio, session)
    outcome = list(studio.embed(session, str(EXAMPLE), 2))[-1]
    assert isinstance(outcome, EmbedOutcome) and outcome.fidelity is not None
    assert outcome.fidelity.psnr == pytest.approx(outcome.psnr) and outcome.tuning_step_s > 0
    assert studio.tuning_estimate(session, 100) == pytest.approx(100 * outcome.tuning_step_s)
    session.ui_cache[STEPS_KEY] = 40
    assert "40 steps" in tuning_cost(studio, session)


def test_an_embedding_prices_tuning_from_its_own_steps_without_tuning(box, studio, monkeypatch):  # noqa: F811
    """No tuning step is run to price tuning (on ZeroGPU every worker would pay one): the embedding's own steps,
    timed between their callbacks, times the measured ratio; an encoder-only embedding's time otherwise."""
    def no_tuning(*_args, **_kwargs):
        raise AssertionError("the embedding ran pivotal tuning to price it")

    clocks: list[gpu_tasks.StepClock] = []

    class Recorded(gpu_tasks.StepClock):
        def __init__(self) -> None:
            super().__init__()
            clocks.append(self)

    monkeypatch.setattr(PivotalTuner, "run", no_tuning)
    monkeypatch.setattr(gpu_tasks, "StepClock", Recorded)
    session = studio.session(box)
    outcome = list(studio.embed(session, str(EXAMPLE), 4))[-1]
    (clock,) = clocks
    assert clock.steps == 3 and clock.seconds > 0  # the gaps between four steps' callbacks
    assert outcome.tuning_step_s == pytest.approx(gpu_tasks.TUNING_PER_EMBED_STEP * clock.seconds / 3)
    assert session.tuning_step_s == outcome.tuning_step_s
    fast = list(studio.embed(session, str(EXAMPLE), 0))[-1]
    assert fast.tuning_step_s > 0 and fast.fidelity is not None and len(clocks) == 1


def test_the_step_clock_leaves_out_the_callbacks_own_work():
    clock = gpu_tasks.StepClock()
    timed = clock.wrap(lambda _info: time.sleep(0.1))  # a preview: slow, and not the optimisation's
    for _ in range(4):
        timed(None)
    assert clock.steps == 3 and clock.seconds < 0.05


def test_tuning_needs_an_embedded_photo(box, studio):  # noqa: F811
    session = studio.session(box)
    studio.sample(session, 1)
    with pytest.raises(InputError, match="embedded photo"):
        list(studio.tune(session, 10))
    list(studio.embed(session, str(EXAMPLE), 0))
    with pytest.raises(InputError, match=r"1\.\.1000"):
        list(studio.tune(session, 0))


def test_tune_then_edit_on_the_tuned_copy_until_a_new_image(box, studio):  # noqa: F811
    session = studio.session(box)
    embedded = list(studio.embed(session, str(EXAMPLE), 2))[-1]
    shared = studio.pipeline(session)
    items = list(studio.tune(session, 12))
    outcome = items[-1]
    assert isinstance(outcome, TuneOutcome) and sum(isinstance(i, Progress) for i in items) == 12
    assert outcome.psnr_before == pytest.approx(embedded.psnr) and outcome.psnr_after > outcome.psnr_before
    assert outcome.seconds > 0 and session.tuning_step_s == pytest.approx(outcome.seconds / 12)
    assert isinstance(session.tuned, dict) and studio.pipeline(session) is shared
    tuned = shared.with_tuned(session.tuned)  # what the session's GPU tasks draw with
    assert session.current.kind == "embed" and "pivotal tuning (12 steps)" in session.current.label
    assert image_psnr(session.current.image, embedded.source) == pytest.approx(outcome.psnr_after)

    painted = lab.upscale(lab.colorize(_paint_eyebrows(session), tuned.bundle.palette), 8)
    edit = list(studio.edit(session, painted, 3))[-1]
    assert isinstance(edit, EditOutcome)
    assert np.array_equal(edit.step.image, tuned.render(edit.step.latent).image)  # drawn by the tuned copy
    assert not np.array_equal(edit.step.image, shared.render(edit.step.latent).image)
    studio.apply_vectors(session, [("smile", 1.0)])
    assert np.array_equal(session.current.image, tuned.render(session.current.latent, with_labels=False).image)

    thumbnails, _ = studio.gallery(session)  # shared pictures: drawn by the original model
    studio.registry.thumbnails._items.clear()
    assert [t.tobytes() for t, _ in studio.gallery(session)[0]] == [t.tobytes() for t, _ in thumbnails]

    studio.sample(session, 5)
    assert session.tuned is None


def test_cancelling_tuning_keeps_the_steps_done(box, studio):  # noqa: F811
    session = studio.session(box)
    list(studio.embed(session, str(EXAMPLE), 0))
    items = []
    for item in studio.tune(session, 200):
        items.append(item)
        if isinstance(item, Progress) and item.step == 3:
            session.cancel()
    assert any(isinstance(i, Notice) and "stopped" in i.text for i in items)
    assert isinstance(items[-1], TuneOutcome) and items[-1].stopped and 3 <= items[-1].steps_done < 200
    assert session.tuned is not None

    list(studio.embed(session, str(EXAMPLE), 0))
    assert session.tuned is None  # a new photo drops the tuned copy
