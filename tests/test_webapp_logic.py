"""The studio's plain-Python parts: label snapping, history, controller actions on a tiny bundle."""

from __future__ import annotations

import threading
import time

import gradio as gr
import numpy as np
import pytest
import torch
from helpers_suite import EXAMPLE

from editgan_core.latents import load_latent
from editgan_core.optim import StepInfo
from editgan_core.pipeline import InputError
from editgan_core.vectors import VectorError, load_vector
from webapp import labels as lab
from webapp.actions.vectors import parse_active
from webapp.controller import Studio
from webapp.errors import user_errors
from webapp.outcomes import EditOutcome, EmbedOutcome, Notice, Progress
from webapp.registry import ModelRegistry
from webapp.session import History, SessionBox, Step, close_box
from webapp.streaming import stream_job

PALETTE = np.array([(0, 0, 0), (240, 180, 130), (130, 70, 20), (220, 30, 60), (255, 255, 255)], np.uint8)


@pytest.fixture(scope="module")
def studio(tiny_bundle) -> Studio:
    # a preview at every step: a tiny model's jobs end before the page's interval
    return Studio(ModelRegistry([tiny_bundle], device="cpu"), preview_every_s=0)


@pytest.fixture
def box():
    b = SessionBox()
    yield b
    close_box(b)


# ----------------------------------------------------------------------------------------------- labels


def test_exact_and_noisy_colours_snap_to_their_class():
    ids = np.array([[0, 1, 2], [3, 4, 1]])
    picture = lab.colorize(ids, PALETTE).astype(np.int16)
    noisy = np.clip(picture + np.random.default_rng(0).integers(-12, 13, picture.shape), 0, 255).astype(np.uint8)
    snapped, far = lab.snap_image(noisy, PALETTE)
    assert np.array_equal(snapped, ids) and not far.any()


def test_anti_aliased_edge_snaps_to_one_of_its_two_classes():
    # a lips stroke on skin, with a one-pixel edge that is a 50/50 blend of the two colours
    ids = np.ones((8, 8), np.int64)
    ids[:, 5:] = 3
    picture = lab.colorize(ids, PALETTE).astype(np.float32)
    picture[:, 4] = 0.5 * PALETTE[1] + 0.5 * PALETTE[3]
    assert lab.snap_colors(picture[:1, 4], PALETTE)[1].tolist() == [False]  # too far to snap directly
    snapped, far = lab.snap_image(picture.astype(np.uint8), PALETTE)
    assert not far.any()
    assert set(np.unique(snapped[:, 4]).tolist()) <= {1, 3}


def test_far_colour_is_reported_not_used():
    base = np.ones((32, 32), np.uint8)
    layer = np.zeros((256, 256, 4), np.uint8)
    layer[40:120, 40:120] = (0, 255, 0, 255)  # pure green: no class of this palette
    layer[150:200, 150:200] = (*PALETTE[3], 255)  # a proper lips stroke
    result = lab.read_painting({"background": None, "layers": [layer], "composite": None}, base, PALETTE)
    assert result.far_pixels == 10 * 10  # 80 canvas px at 8x = 10 model px a side
    assert (result.labels[result.far] == 1).all()  # left as it was
    assert result.labels[20, 20] == 3 and result.changed_pixels == int((result.labels == 3).sum()) > 0


def test_editor_strokes_read_back_at_model_resolution():
    base = np.zeros((32, 32), np.uint8)
    layer = np.zeros((256, 256, 4), np.uint8)
    layer[64:128, 64:128] = (*PALETTE[2], 255)
    layer[62:64, 64:128] = (*PALETTE[2], 90)  # faint brush fringe: not a stroke
    result = lab.read_painting({"background": None, "layers": [layer], "composite": None}, base, PALETTE)
    expected = np.zeros((32, 32), bool)
    expected[8:16, 8:16] = True
    assert np.array_equal(result.changed, expected) and (result.labels[expected] == 2).all()


def test_edited_picture_without_layers_is_compared_with_the_start():
    base = np.zeros((32, 32), np.uint8)
    base[:, 16:] = 1
    edited = base.copy()
    edited[4:8, 4:8] = 4
    result = lab.read_painting(lab.upscale(lab.colorize(edited, PALETTE), 4), base, PALETTE)
    assert np.array_equal(result.labels, edited) and result.changed_pixels == 16
    untouched = lab.editor_value(base, PALETTE, 8)
    assert lab.read_painting(untouched, base, PALETTE).changed_pixels == 0


def test_downsampling_takes_the_majority_per_cell():
    hr = np.zeros((8, 8), np.uint8)
    hr[:3, :4] = 2  # 12 of the 16 pixels of cell (0, 0)
    assert lab.downsample_labels(hr, 2).tolist() == [[2, 0], [0, 0]]


# ----------------------------------------------------------------------------------------------- history


def _step(i: int, kind: str = "edit") -> Step:
    return Step(kind, f"s{i}", torch.full((1, 2, 2), float(i)), np.zeros((2, 2, 3), np.uint8), None)


def test_history_undo_redo_and_new_step_drops_redo_tail():
    h = History()
    assert h.current is None and not h.can_undo and h.undo() is None
    for i in range(3):
        h.push(_step(i, "sample" if i == 0 else "edit"))
    assert h.undo().label == "s1" and h.undo().label == "s0" and not h.can_undo
    assert h.undo().label == "s0"  # nothing further back
    assert h.redo().label == "s1" and h.can_redo
    h.push(_step(9))
    assert [s.label for s in h.steps] == ["s0", "s1", "s9"] and not h.can_redo


def test_history_amend_reset_goto_and_limit():
    h = History(limit=4)
    h.push(_step(0, "sample"))
    h.push(_step(1))
    h.amend(_step(2))
    assert [s.label for s in h.steps] == ["s0", "s2"]
    reset = h.reset()
    assert reset.kind == "reset" and torch.equal(reset.latent, h.steps[0].latent) and h.index == 2
    assert h.undo().label == "s2"  # reset is undoable
    for i in range(3, 8):
        h.push(_step(i))
    assert len(h.steps) == 4 and h.current.label == "s7"
    assert h.goto(0).label == h.steps[0].label and h.goto(99).label == "s7"


def test_session_jobs_stop_when_cancelled_or_replaced(box, studio):
    session = studio.session(box)
    first = session.new_job()
    second = session.new_job()
    assert first.is_set() and not second.is_set()
    assert session.cancel() and second.is_set() and not session.cancel()
    workdir = session.workdir
    close_box(box)
    assert not workdir.exists() and box.session is None


# ----------------------------------------------------------------------------------------------- controller


def test_parse_active():
    assert parse_active("smile, look_left", "1.5, -0.5") == [("smile", 1.5), ("look_left", -0.5)]
    assert parse_active("smile\nlook_left", "2") == [("smile", 2.0), ("look_left", None)]
    with pytest.raises(InputError):
        parse_active("smile", "strong")
    with pytest.raises(InputError):
        parse_active("smile", "1, 2")


def test_a_new_session_starts_on_the_initial_face(box, studio):
    session = studio.session(box)
    assert [s.label for s in session.history.steps] == ["sample seed 0"]
    assert np.array_equal(session.current.image, studio.initial_page()[0].image)
    assert studio.session(box) is session  # one session per box
    other = SessionBox()
    assert studio.session(other) is not session and other.session.workdir != session.workdir
    close_box(other)


def test_idle_sessions_are_closed(studio):
    quick = Studio(studio.registry, session_idle_s=0.0)
    old = SessionBox()
    workdir = quick.session(old).workdir
    time.sleep(0.01)
    quick.session(SessionBox())  # creating a session sweeps idle ones
    assert old.session is None and not workdir.exists()


def test_sample_embed_and_view(box, studio):
    session = studio.session(box)
    step = studio.sample(session, 3)
    assert step.image.shape == (32, 32, 3) and step.labels.shape == (32, 32)
    items = list(studio.embed(session, str(EXAMPLE), 4))
    assert [type(i) for i in items[:-1]] == [Progress] * 4 and isinstance(items[-1], EmbedOutcome)
    assert items[-1].source.shape == (32, 32, 3) and items[-1].psnr > 5
    assert any(i.preview is not None for i in items[:-1])
    fast = list(studio.embed(session, str(EXAMPLE), 0))
    assert len(fast) == 1 and fast[0].step.label == "embed (encoder)"
    view = studio.view(session)
    assert view.editor["background"].shape == (256, 256, 4) and view.can_undo and not view.can_redo
    assert len(view.history) == 4 and view.history[-1][1].startswith("▶ 4.")


def _paint_eyebrows(session) -> np.ndarray:
    edited = session.current.labels.copy()
    edited[6:14, 6:14] = 3  # a block of eyebrows colour
    return edited


def test_edit_save_apply_refine_export(box, studio, tmp_path):
    session = studio.session(box)
    studio.sample(session, 0)
    before = session.current
    edited = _paint_eyebrows(session)
    palette = studio.pipeline(session).bundle.palette
    painted = lab.upscale(lab.colorize(edited, palette), 8)
    assert studio.read_paint(session, painted).changed_pixels == int((edited != before.labels).sum())

    items = list(studio.edit(session, painted, 12))
    outcome = items[-1]
    assert isinstance(outcome, EditOutcome) and sum(isinstance(i, Progress) for i in items) == 12
    figures = outcome.figures
    assert figures["change_inside"] > figures["change_outside"]
    assert not np.array_equal(outcome.step.image, before.image)
    assert session.current.kind == "edit" and 3 in outcome.result.class_ids

    with pytest.raises(InputError, match="name"):
        studio.save_vector(session, "  ")
    saved = studio.save_vector(session, "Bushy brows", "block of eyebrow")
    with pytest.raises(VectorError, match="already exists"):
        studio.save_vector(session, "bushy brows")
    shipped = load_vector(studio.export(session)[3], session.bundle_id)
    assert shipped.name == "Bushy brows" and torch.equal(shipped.delta, saved.delta)  # the saved edit, named
    _, names = studio.gallery(session)
    assert names[-1] == "Bushy brows" and "smile" in names

    studio.undo(session)  # back to the sample, then reuse the vector on it
    step = studio.apply_vectors(session, [("smile", 1.5)])
    assert step.active == (("smile", 1.5),) and not np.array_equal(step.image, before.image)
    n_steps = len(session.history.steps)
    studio.set_strengths(session, [0.0])  # only the strength changed: same history step
    assert len(session.history.steps) == n_steps and np.array_equal(session.current.image, before.image)
    fast = studio.set_strengths(session, [1.5], with_labels=False)  # a drag: the picture now, labels later
    assert fast.labels is None and studio.view(session, labels=False).label_picture is None
    assert np.array_equal(studio.view(session).labels, step.labels) and session.current.labels is not None
    studio.add_vector(session, saved.name)
    assert [n for n, _ in studio.active(session)] == ["smile", "Bushy brows"]
    studio.remove_vector(session, 0)
    assert studio.active(session) == [("Bushy brows", 1.0)]

    refined = list(studio.refine(session, 5))
    assert isinstance(refined[-1], EditOutcome) and session.current.kind == "refine"
    assert studio.active(session) == [("Bushy brows", 1.0)]  # the sliders stay with the refined picture
    assert studio.undo(session).kind == "apply" and studio.active(session) == [("Bushy brows", 1.0)]

    files = studio.export(session)
    assert [f.suffix for f in files] == [".png", ".png", ".safetensors", ".safetensors"]
    latent_file = load_latent(files[2], session.bundle_id, studio.pipeline(session).latent_shape)
    assert torch.equal(latent_file.latent, session.current.latent)
    assert load_vector(files[3], session.bundle_id).delta.shape == studio.pipeline(session).latent_shape
    exported = studio.export_vector(session, "bushy brows")
    assert studio.import_vector(session, exported).name == "Bushy brows (2)"
    official = tmp_path / "official_smile.npy"  # the official EditGAN format: float32 (1, n_latent, 512-like)
    np.save(official, np.random.default_rng(0).normal(size=(1, *studio.pipeline(session).latent_shape)).astype("f4"))
    assert studio.import_vector(session, official).name == "official_smile"


def test_refine_can_only_keep_the_other_parts(box, studio):
    session = studio.session(box)
    studio.sample(session, 0)
    applied = studio.apply_vectors(session, [("smile", 2.0)])
    assert [type(i) for i in studio.refine(session, 0)] == [Notice]  # nothing asked: the vectors stay as applied
    assert session.current is applied
    outcome = list(studio.refine(session, 0, keep_parts=True))[-1]
    assert isinstance(outcome, EditOutcome) and outcome.figures["steps"] == 0
    assert outcome.figures["colour_change_after"] < outcome.figures["colour_change_before"]
    assert session.current.kind == "refine" and "other parts kept" in session.current.label
    assert not torch.equal(session.current.latent, applied.latent)
    assert studio.active(session) == [("smile", 2.0)]  # the slider stays: Refine again starts from the vector


def test_saved_vectors_outlast_the_session_and_a_restart(box, studio, editgan_home):
    session = studio.session(box)
    painted = lab.upscale(lab.colorize(_paint_eyebrows(session), studio.pipeline(session).bundle.palette), 8)
    list(studio.edit(session, painted, 2))
    saved = studio.save_vector(session, "Bushy brows")
    box.close()  # the tab goes away: its temp folder goes, the vector stays

    def restarted() -> tuple[Studio, SessionBox]:  # a new app on the same bundle, as after a server restart
        return Studio(ModelRegistry([studio.pipeline(session).bundle.root], device="cpu")), SessionBox()

    again, fresh = restarted()
    pictures, names = again.gallery(again.session(fresh))
    assert names == ["look_left", "smile", "Bushy brows"]
    assert [caption.split(" · ")[1] for _, caption in pictures] == ["preset", "preset", "yours"]
    reloaded = again.session(fresh).library.get("bushy brows")
    assert reloaded.delta.equal(saved.delta) and reloaded.class_ids == saved.class_ids
    with pytest.raises(VectorError, match="preset"):
        again.session(fresh).library.rename("smile", "grin")
    again.session(fresh).library.rename("Bushy brows", "Thick brows")
    close_box(fresh)

    again, fresh = restarted()
    assert again.gallery(again.session(fresh))[1] == ["look_left", "smile", "Thick brows"]
    again.session(fresh).library.delete("thick brows")
    close_box(fresh)
    again, fresh = restarted()
    assert again.gallery(again.session(fresh))[1] == ["look_left", "smile"]
    assert [p.name for p in (editgan_home / "vectors" / session.bundle_id).glob("*.safetensors")] == []
    close_box(fresh)


def test_edit_refuses_an_unchanged_map_and_warns_about_far_colours(box, studio):
    session = studio.session(box)
    studio.sample(session, 1)
    value = studio.view(session).editor
    with pytest.raises(InputError, match="identical"):
        list(studio.edit(session, value, 3))
    layer = np.zeros_like(value["background"])
    layer[0:40, 0:40] = (0, 255, 0, 255)
    gen = studio.edit(session, {"background": value["background"], "layers": [layer], "composite": None}, 3)
    notice = next(gen)
    assert isinstance(notice, Notice) and "25 painted pixel" in notice.text
    with pytest.raises(InputError, match="identical"):
        next(gen)


def test_cancel_stops_a_running_edit_and_keeps_the_best_so_far(box, studio):
    session = studio.session(box)
    studio.sample(session, 2)
    painted = _paint_eyebrows(session)
    seen = []
    for item in studio.edit(session, painted, 500):
        seen.append(item)
        if isinstance(item, Progress) and item.step == 2:
            threading.Thread(target=session.cancel).start()
    outcome = seen[-1]
    assert isinstance(outcome, EditOutcome) and outcome.result.stopped and outcome.figures["steps"] < 500
    assert any(isinstance(i, Notice) and "stopped" in i.text for i in seen)


def _streamed(every_s: float, pause_before: int = 0, pause_s: float = 0.0) -> tuple[list[Progress], str]:
    """Progress items and result of a 5-step job through ``stream_job`` (one pause before a step, if asked)."""

    def work(callback):
        for step in range(1, 6):
            if step == pause_before:
                time.sleep(pause_s)
            callback(StepInfo(step, 5, 1.0 / step, {}, 1.0, torch.zeros(1)))
        return "done"

    gen = stream_job(work, lambda _: np.zeros((2, 2, 3), np.uint8), threading.Event(), every_s)
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return items, stop.value


def test_previews_come_by_time_and_never_with_the_last_step():
    items, result = _streamed(0.0)
    assert result == "done" and [i.step for i in items] == [1, 2, 3, 4, 5]
    assert [i.preview is not None for i in items] == [True, True, True, True, False]
    assert all(i.preview is None for i in _streamed(3600.0)[0])
    items, _ = _streamed(0.5, pause_before=3, pause_s=0.6)  # only the step after the pause is due a picture
    assert [i.preview is not None for i in items] == [False, False, True, False, False]


def test_user_errors_turns_failures_into_messages():
    @user_errors
    def bad_input():
        raise InputError("the seed must be between 0 and 2147483647")

    @user_errors
    def crash():
        raise RuntimeError("boom")

    @user_errors
    def streaming():
        yield 1
        raise VectorError("no vector named 'x'")

    with pytest.raises(gr.Error, match="the seed must be"):
        bad_input()
    with pytest.raises(gr.Error, match=r"Something went wrong on the server \(reference [0-9a-f]{8}\)") as caught:
        crash()
    assert "RuntimeError" not in caught.value.message and "boom" not in caught.value.message  # no type names
    gen = streaming()
    assert next(gen) == 1
    with pytest.raises(gr.Error, match="no vector named"):
        next(gen)
