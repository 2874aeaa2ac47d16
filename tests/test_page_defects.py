"""Issue #23's page defects that plain Python can show: overlapping strength changes (the newest wins, the canvas
waits for stillness), Refine twice, and Export after undo. The browser-only ones are in test_browser.py."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from editgan_core.vectors import load_vector
from webapp.controller import Studio
from webapp.outcomes import EditOutcome
from webapp.registry import ModelRegistry
from webapp.session import Debounce, NewestWins, SessionBox, close_box


@pytest.fixture(scope="module")
def studio(tiny_bundle) -> Studio:
    return Studio(ModelRegistry([tiny_bundle], device="cpu"))


@pytest.fixture
def box():
    b = SessionBox()
    yield b
    close_box(b)


def test_newest_wins_skips_an_older_request_that_comes_late():
    order = NewestWins()
    older, newer = order.ticket(), order.ticket()
    assert order.run(newer, lambda: "newer") == "newer"
    assert order.run(older, lambda: "older") is None  # it would have undone the newer one
    assert order.run(order.ticket(), lambda: "next") == "next"


def test_a_slow_older_strength_change_cannot_overwrite_a_newer_one(box, studio, monkeypatch):
    """The first change renders slowly; the second arrives meanwhile and must be the final state (before the
    fix it finished first and the first one then overwrote it)."""
    session = studio.session(box)
    studio.apply_vectors(session, [("smile", 1.0)])
    pipe = studio.pipeline(session)
    apply = pipe.apply
    slow_started = threading.Event()

    def slow_apply(latent, vectors):
        if any(abs(scale - 0.3) < 1e-9 for _, scale in vectors):
            slow_started.set()
            time.sleep(0.6)
        return apply(latent, vectors)

    monkeypatch.setattr(pipe, "apply", slow_apply)
    first = threading.Thread(target=studio.set_strengths, args=(session, [0.3]), kwargs={"with_labels": False})
    first.start()
    assert slow_started.wait(5)
    studio.set_strengths(session, [0.9], with_labels=False)
    first.join()
    assert studio.active(session) == [("smile", 0.9)]

    # the same through the API's apply (names and strengths), mixed with slider changes
    first = threading.Thread(target=studio.apply_newest, args=(session, [("smile", 0.3)]))
    slow_started.clear()
    first.start()
    assert slow_started.wait(5)
    studio.set_strengths(session, [-0.5])
    first.join()
    assert studio.active(session) == [("smile", -0.5)]


def test_an_unchanged_strength_renders_nothing(box, studio, monkeypatch):
    session = studio.session(box)
    step = studio.apply_vectors(session, [("smile", 1.0)])
    monkeypatch.setattr(studio.pipeline(session), "render", lambda *a, **k: pytest.fail("rendered again"))
    assert studio.set_strengths(session, [1.0]) is step  # the release that ends a drag


def test_debounce_has_one_waiter_that_waits_for_the_last_change():
    still = Debounce()
    results: list[tuple[bool, float]] = []
    still.touch()
    waiter = threading.Thread(target=lambda: results.append((still.wait_still(0.3), time.monotonic())))
    waiter.start()
    time.sleep(0.1)
    assert still.wait_still(0.3) is False  # someone is waiting already: return at once
    still.touch()
    last_change = time.monotonic()
    waiter.join()
    (done, at), = results
    assert done and at - last_change >= 0.29  # the later change extended the wait
    assert still.wait_still(0.0) is True  # nobody waits any more


def test_refine_twice_and_export_the_step_shown(box, studio):
    session = studio.session(box)
    applied = studio.apply_vectors(session, [("smile", 1.0)])
    assert isinstance(list(studio.refine(session, 2))[-1], EditOutcome)
    first = session.current
    assert first.kind == "refine" and studio.active(session) == [("smile", 1.0)]
    again = list(studio.refine(session, 3))  # was: "add at least one vector" (the refined step had none)
    assert isinstance(again[-1], EditOutcome) and session.current.label.startswith("refine 3 steps")
    assert torch.equal(session.current.base, applied.base)  # anew from the same vectors on the same picture
    studio.set_strengths(session, [0.5])  # moved after refining: a new step, the refined ones stay
    assert session.current.kind == "apply" and torch.equal(session.current.base, applied.base)

    def shipped():
        return load_vector(studio.export(session)[3], session.bundle_id)

    assert shipped().source == "composed" and torch.equal(shipped().delta, session.current.vector.delta)
    studio.undo(session)
    studio.undo(session)  # back to the first refinement: its vector, not the newest one made
    assert session.current is first and torch.equal(shipped().delta, first.vector.delta)
    studio.undo(session)
    assert session.current.kind == "apply" and torch.equal(shipped().delta, applied.vector.delta)
    studio.goto(session, 0)  # a sampled face was made by no vector
    assert [f.name.rsplit("-", 1)[-1] for f in studio.export(session)] == ["image.png", "labels.png",
                                                                          "latent.safetensors"]
