"""ZeroGPU's contract, checked off ZeroGPU: every ``gpu``-decorated function's arguments, results and yielded
items survive ``pickle`` (a worker process gets copies), and the session sees the results afterwards."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import test_annotation as ann
import test_webapp_logic as logic
import torch
from helpers_suite import EXAMPLE

from editgan_core.annotation.store import AnnotationStore
from editgan_core.annotation.suggest import Suggestion
from editgan_core.annotation.training import TrainSettings
from editgan_core.bundle import Bundle
from editgan_core.models.segmenter import PixelEnsemble
from webapp import gpu as gpu_module
from webapp import gpu_tasks
from webapp import labels as lab
from webapp.actions import annotate as annotate_actions
from webapp.actions.annotate import TrainOutcome
from webapp.controller import Studio
from webapp.outcomes import EditOutcome, EmbedOutcome, Notice, Progress, TuneOutcome
from webapp.registry import ModelRegistry
from webapp.session import SessionBox

pytestmark = pytest.mark.skipif(gpu_module.gpu is not gpu_module._stand_in,
                                reason="the `spaces` package is installed: its GPU decorator replaces the stand-in")

studio, box = logic.studio, logic.box  # the tiny-bundle studio and session fixtures
TASKS = {"webapp.gpu_tasks.embed_task", "webapp.gpu_tasks.edit_task", "webapp.gpu_tasks.refine_task",
         "webapp.gpu_tasks.tune_task"}
QUICK_TASKS = {"webapp.gpu_tasks.render_task", "webapp.gpu_tasks.sample_task", "webapp.gpu_tasks.spread_task"}
PAIRS_TASKS = {"webapp.gpu_tasks.preset_task", "webapp.gpu_tasks.dataset_task"}
ANNOTATE_TASKS = {"webapp.gpu_tasks.samples_task", "webapp.gpu_tasks.suggest_task",
                  "webapp.gpu_tasks.train_segmenter_task", "webapp.gpu_tasks.validate_segmenter_task"}


@pytest.fixture
def trips(monkeypatch) -> list:
    """Emulate ZeroGPU: every argument tuple, result and yielded item goes through pickle; record them."""
    seen: list = []

    def through_pickle(value):
        seen.append(value)
        return pickle.loads(pickle.dumps(value))

    monkeypatch.setattr(gpu_module.EMULATE, "on", True)
    monkeypatch.setattr(gpu_module, "_through_pickle", through_pickle)
    return seen


def test_every_gpu_function_is_covered_here():
    """A new ``gpu``-decorated function needs a pickling scenario below."""
    assert set(gpu_module.GPU_FUNCTIONS) == TASKS | QUICK_TASKS | PAIRS_TASKS | ANNOTATE_TASKS


def test_a_session_does_not_pickle_so_passing_one_fails(box, studio, trips, monkeypatch):
    monkeypatch.setattr(gpu_module, "GPU_FUNCTIONS", {})
    session = studio.session(box)
    studio.sample(session, 1)

    @gpu_module.gpu(duration=5)
    def bad(session):
        return session.current

    with pytest.raises(TypeError, match="pickle"):
        bad(session)
    assert list(gpu_module.GPU_FUNCTIONS) == [f"{__name__}.{bad.__qualname__}"]


def _calls(trips: list) -> list[tuple]:
    """The argument tuples among the pickled values (each call pickles ``(args, kwargs)`` first)."""
    return [v for v in trips if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], dict)]


def test_embed_edit_refine_through_pickle_update_the_session(box, studio, trips):
    session = studio.session(box)
    studio.sample(session, 0)
    palette = studio.pipeline(session).bundle.palette

    # an edit in it, a saved vector, then an active vector: history, vectors and an edit
    items = list(studio.edit(session, lab.upscale(lab.colorize(logic._paint_eyebrows(session), palette), 8), 4))
    outcome = items[-1]
    assert isinstance(outcome, EditOutcome) and sum(isinstance(i, Progress) for i in items) == 4
    assert session.current.kind == "edit" and torch.equal(session.current.latent, outcome.step.latent)
    assert session.last_edit is not None and torch.equal(session.current.vector.delta, session.last_edit.delta)
    studio.save_vector(session, "brows")
    studio.undo(session)
    studio.apply_vectors(session, [("smile", 1.0), ("brows", 0.5)])

    n = len(session.history.steps)
    refined = list(studio.refine(session, 3))
    assert isinstance(refined[-1], EditOutcome) and session.current.kind == "refine"
    assert len(session.history.steps) == n + 1 and session.current.vector.source == "refined"
    assert torch.equal(session.current.vector.delta, refined[-1].result.delta)

    embedded = list(studio.embed(session, str(EXAMPLE), 2))
    assert isinstance(embedded[-1], EmbedOutcome) and session.current.kind == "embed"
    assert np.array_equal(session.current.image, embedded[-1].step.image)
    fast = list(studio.embed(session, str(EXAMPLE), 0))
    assert session.current is fast[-1].step and session.current.label == "embed (encoder)"

    calls = _calls(trips)
    jobs = [c for c in calls if len(c[0]) >= 6]  # (models, bundle, steps, input, ..., job, preview interval)
    quick = [c for c in calls if len(c[0]) == 4]  # renders and samples: (models, bundle, latents | seed, ...)
    spread = [c for c in calls if len(c[0]) == 2]  # the model's latent spread, once per model: (models, bundle)
    assert len(jobs) == 4 and len(jobs) + len(quick) + len(spread) == len(calls)  # edit, refine, embed, embed
    assert len(spread) <= 1 and len([v for v in trips if type(v) is float]) == len(spread)  # its result
    assert len(quick) >= 3  # the strength change, the picture before refinement, the saved vector's thumbnail
    for args, kwargs in calls:
        assert all(not hasattr(a, "history") for a in (*args, *kwargs.values()))  # never a session
    # every yielded item went through pickle too: progress of 4 + 3 + 2 steps, the four results, and the
    # quick tasks' results
    assert sum(isinstance(v, Progress) for v in trips) == 4 + 3 + 2
    assert len(trips) == len(calls) + 4 + 3 + 2 + 4 + len(quick) + len(spread)


@contextmanager
def models_watched() -> Iterator[list[str]]:
    """The layers (of any model: the generator, segmenter, encoder, a segmenter installed meanwhile, LPIPS, the
    fidelity probe) that ran outside a GPU function while in this block. A segmenter's label maps come from
    its folded weights, not its layers' ``forward``: its ``_map`` (behind every prediction) is watched too."""
    outside: list[str] = []

    def check(module, _inputs):
        if not gpu_module.inside_gpu_function():
            outside.append(type(module).__name__)

    original_map = PixelEnsemble._map

    def watched_map(self, *args, **kwargs):
        check(self, args)
        return original_map(self, *args, **kwargs)

    hook = torch.nn.modules.module.register_module_forward_pre_hook(check)
    PixelEnsemble._map = watched_map
    try:
        yield outside
    finally:
        hook.remove()
        PixelEnsemble._map = original_map


def test_no_model_runs_outside_a_gpu_function(box, studio, trips):
    """On ZeroGPU the GPU exists only inside decorated functions: every forward pass of every model, the
    quick renders (sample, strengths, segmentation catch-up, thumbnails) included, must run in one."""
    session = studio.session(box)
    pipe = studio.pipeline(session)
    vars(pipe).pop("latent_spread", None)  # measured again, as by a fresh model: the check of every applied vector
    pipe._fidelity = None  # loaded again (the discriminator, the digests), in the main process: no forward pass
    with models_watched() as outside:
        studio.sample(session, 3)
        studio.gallery(session)
        studio.apply_vectors(session, [("smile", 1.0)], with_labels=False)
        studio.set_strengths(session, [0.5], with_labels=False)
        studio.current_with_labels(session)
        list(studio.refine(session, 2))
        list(studio.embed(session, str(EXAMPLE), 0))
        palette = pipe.bundle.palette
        list(studio.edit(session, lab.upscale(lab.colorize(logic._paint_eyebrows(session), palette), 8), 2))
        studio.save_vector(session, "brows")
        studio.gallery(session)
        for seed in range(3):  # presets from pairs and the labelled-samples zip (webapp.actions.presets)
            studio.sample(session, seed)
            painted = lab.upscale(lab.colorize(logic._paint_eyebrows(session), palette), 8)
            studio.add_to_preset(session, "pairs", painted)
        list(studio.learn_preset(session, "pairs", 2))
        list(studio.dataset_zip(session, 2))
        list(studio.embed(session, str(EXAMPLE), 0))
        list(studio.embed(session, str(EXAMPLE), 2))
        list(studio.tune(session, 2))
        studio.apply_vectors(session, [("smile", 1.0)])
        list(studio.refine(session, 1))
    assert trips and not outside, f"models used outside a GPU function: {sorted(set(outside))}"
    assert {type(v).__name__ for v in trips} >= {"PresetResult", "DatasetReport"}  # through pickle too


@pytest.fixture
def annotating(tiny_bundle_copy):
    """A studio on the test's own bundle copy (annotating writes into the bundle and trains its segmenter),
    and a session with history, a saved vector and an edit in it."""
    studio, box = Studio(ModelRegistry([tiny_bundle_copy], device="cpu"), preview_every_s=0), SessionBox()
    session = studio.session(box)
    studio.sample(session, 0)
    palette = studio.pipeline(session).bundle.palette
    list(studio.edit(session, lab.upscale(lab.colorize(logic._paint_eyebrows(session), palette), 8), 2))
    studio.save_vector(session, "brows")
    studio.apply_vectors(session, [("smile", 1.0), ("brows", 0.5)])
    yield studio, session
    box.close()


def _annotate_everything(studio, session) -> TrainOutcome:
    """Draw samples, add a photo, open, click, paint and save three maps, train and cross-validate."""
    size = studio.pipeline(session).resolution
    studio.annotate_draw(session, count=2, seed=4)
    list(studio.annotate_add_photos(session, [str(EXAMPLE)], 2))
    store = studio.annotation_store(session)
    for k, name in enumerate(store.names()):
        studio.annotate_open(session, name)
        studio.annotate_set_labels(session, ann.painted((size, size), k))
        studio.annotate_click(session, None, 0, 0, "clothes", annotate_actions.REGION_MODE)
        studio.annotate_save(session, None)
    return list(studio.annotate_train(session, ann.TINY_TRAINING))[-1]


def test_no_model_runs_outside_a_gpu_function_when_annotating(annotating, trips, monkeypatch):
    """Section 7 too: samples, photo embeddings, suggestions, training and cross-validation run in GPU tasks, and
    the set's files and the installed segmenter are written in the main process (a worker's changes stay there)."""
    studio, session = annotating
    written: list[bool] = []
    for owner, name in ((AnnotationStore, "add"), (AnnotationStore, "save_labels"),
                        (annotate_actions, "install_segmenter")):
        original = getattr(owner, name)

        def recorded(*args, _original=original, **kwargs):
            written.append(gpu_module.inside_gpu_function())
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, recorded)
    trips.clear()
    with models_watched() as outside:
        outcome = _annotate_everything(studio, session)
        studio.annotate_open(session, studio.annotation_store(session).names()[0])  # the new segmenter's map
    assert isinstance(outcome, TrainOutcome) and "Cross-validated" in outcome.status
    assert not outside, f"models used outside a GPU function: {sorted(set(outside))}"
    assert len(written) == 3 + 3 + 1 and not any(written)  # 3 images added, 3 maps saved, 1 install


def test_annotate_tasks_take_and_return_plain_data(annotating, trips):
    studio, session = annotating
    trips.clear()
    outcome = _annotate_everything(studio, session)
    assert isinstance(outcome, TrainOutcome) and Bundle.load(studio.pipeline(session).bundle.root).manifest[
        "segmenter"]["annotations"] == 3
    calls = _calls(trips)
    plain = (str, int, float, np.ndarray, torch.Tensor, TrainSettings, type(None))
    for args, kwargs in calls:
        values = [*args, *kwargs.values()]
        values += [v for a in values if isinstance(a, list) for v in a]
        assert all(isinstance(v, (*plain, list)) for v in values), [type(v) for v in values]
    named = {type(v).__name__ for v in trips}
    assert named >= {"Suggestion", "TrainedSegmenter", "Validated", "Embedded"}
    drawn = next(v for v in trips if isinstance(v, list) and v and isinstance(v[0], tuple))
    assert len(drawn) == 2 and all(isinstance(latent, torch.Tensor) and isinstance(image, np.ndarray)
                                   for latent, image in drawn)
    trained = next(v for v in trips if type(v).__name__ == "TrainedSegmenter")
    assert all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in trained.state.values())
    assert all(isinstance(v.regions, np.ndarray) for v in trips if isinstance(v, Suggestion))
    # the session's history, vectors and edit were left alone, and none of it travelled
    assert session.current.kind == "apply" and session.last_edit is not None
    assert all(not hasattr(v, "history") and not hasattr(v, "generator") for v in trips)


def test_cancelled_training_through_pickle_leaves_the_segmenter(annotating, trips):
    studio, session = annotating
    segmenter = studio.pipeline(session).bundle.root / "segmenter.safetensors"
    before = segmenter.read_bytes()
    studio.annotate_draw(session, count=2, seed=1)
    for _ in range(2):
        studio.annotate_save(session, None)
    items = studio.annotate_train(session, TrainSettings(members=2, steps=200, pixels=64, folds=2, cv_members=1,
                                                         cv_steps=10))
    next(i for i in items if isinstance(i, Progress))
    session.cancel()
    rest = list(items)
    assert isinstance(rest[-1], Notice) and "not changed" in rest[-1].text
    assert segmenter.read_bytes() == before and any(isinstance(v, Notice) for v in trips)


def test_annotate_durations_grow_with_their_inputs(annotating):
    studio, session = annotating
    models, bundle = studio.gpu_models, session.bundle_id
    latents = [session.current.latent] * 4
    assert gpu_tasks.samples_seconds(models, bundle, range(2)) < gpu_tasks.samples_seconds(models, bundle, range(64))
    assert gpu_tasks.QUICK_OVERHEAD_S < gpu_tasks.suggest_seconds(models, bundle, latents[0], 24) < gpu_tasks.OVERHEAD_S
    small, big = ann.TINY_TRAINING, TrainSettings()
    for duration in (gpu_tasks.train_seconds, gpu_tasks.validate_seconds):
        assert gpu_tasks.OVERHEAD_S < duration(models, bundle, latents, None, small) < duration(
            models, bundle, latents, None, big) <= gpu_tasks.MAX_DURATION_S
        assert duration(models, bundle, latents[:2], None, big) < duration(models, bundle, latents * 4, None, big)


def test_what_workers_should_inherit_is_ready_in_the_main_process(annotating):
    """The latent spread and the fidelity report's discriminator and file digests are kept by the main process's
    model, so a forked worker starts with them (a worker's own would be lost with it)."""
    studio, session = annotating
    pipe = studio.pipeline(session)
    assert "latent_spread" in vars(pipe) and pipe._fidelity is not None and "key" in vars(pipe._fidelity)


def test_gallery_thumbnails_are_one_task_however_many_vectors(box, studio, trips):
    session = studio.session(box)
    studio.registry.thumbnails._items.clear()
    trips.clear()
    pictures, names = studio.gallery(session)
    renders = [c for c in _calls(trips) if len(c[0]) == 4 and isinstance(c[0][2], list)]
    assert len(names) >= 2 and len(renders) == 1 and len(renders[0][0][2]) == len(names)
    trips.clear()
    assert [p.tobytes() for p, _ in studio.gallery(session)[0]] == [p.tobytes() for p, _ in pictures]
    assert not _calls(trips)  # all cached now


def test_durations_grow_with_steps_and_are_callable_with_the_arguments(box, studio, trips):
    session = studio.session(box)
    studio.sample(session, 2)
    studio.pipeline(session)  # the model's first use measures its latent spread in a GPU task of its own
    trips.clear()
    list(studio.embed(session, str(EXAMPLE), 2))
    (args, kwargs), = _calls(trips)
    _, duration = gpu_module.GPU_FUNCTIONS["webapp.gpu_tasks.embed_task"]
    seconds = duration(*args, **kwargs)
    longer = list(args)
    longer[2] = 2000
    assert gpu_tasks.OVERHEAD_S <= seconds < duration(*longer, **kwargs) <= gpu_tasks.MAX_DURATION_S
    own = {"webapp.gpu_tasks.tune_task": gpu_tasks.tune_seconds,
           "webapp.gpu_tasks.refine_task": gpu_tasks.refine_seconds}
    for name in TASKS - set(own):
        assert gpu_module.GPU_FUNCTIONS[name][1] is gpu_tasks.task_seconds
    for name, seconds_of in own.items():
        assert gpu_module.GPU_FUNCTIONS[name][1] is seconds_of
    assert gpu_tasks.tune_seconds(*args[:3]) > gpu_tasks.task_seconds(*args[:3])
    refine_args = (*args[:3], None, [], "job", 0.5)
    assert gpu_tasks.refine_seconds(*refine_args) == gpu_tasks.task_seconds(*args[:3])
    assert gpu_tasks.refine_seconds(*refine_args, None, True) > gpu_tasks.task_seconds(*args[:3])  # + the correction


def test_tuned_weights_travel_as_a_state_dict_and_edits_use_them(box, studio, trips):
    session = studio.session(box)
    list(studio.embed(session, str(EXAMPLE), 0))
    outcome = list(studio.tune(session, 3))[-1]
    assert isinstance(outcome, TuneOutcome) and session.tuned is not None
    palette = studio.pipeline(session).bundle.palette
    edit = list(studio.edit(session, lab.upscale(lab.colorize(logic._paint_eyebrows(session), palette), 8), 2))[-1]
    tuned = studio.pipeline(session).with_tuned(session.tuned)
    assert np.array_equal(edit.step.image, tuned.render(edit.step.latent).image)
    calls = _calls(trips)
    tune_args = next(args for args, _ in calls if len(args) == 7)
    edit_args = next(args for args, _ in calls if len(args) == 8)
    renders = [kwargs for args, kwargs in calls if len(args) == 4]
    tuned_state = edit_args[-1]
    assert isinstance(tuned_state, dict) and all(isinstance(v, torch.Tensor) for v in tuned_state.values())
    assert tuned_state.keys() == session.tuned.keys() and renders and renders[-1]["tuned"] is not None
    assert all(not hasattr(a, "history") and not hasattr(a, "generator") for a in (*tune_args, *edit_args))


def test_quick_tasks_ask_for_a_short_slot_that_grows_with_the_renders(box, studio):
    session = studio.session(box)
    models, bundle = studio.gpu_models, session.bundle_id
    one = gpu_tasks.render_seconds(models, bundle, [session.current.latent])
    many = gpu_tasks.render_seconds(models, bundle, [session.current.latent] * 500)
    assert gpu_tasks.QUICK_OVERHEAD_S < one < many <= gpu_tasks.MAX_DURATION_S
    assert gpu_tasks.sample_seconds(models, bundle, 1, 0.7) == one < gpu_tasks.OVERHEAD_S
