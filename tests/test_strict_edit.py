"""Issue #24: the strict benchmark's rules, the stray-pixel region rule, layer restriction, part colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from editgan_core.edit_layers import candidate_ranges, choose_layers
from editgan_core.editing import EditTarget, edit_region, infer_edit_classes, layer_mask, optimise_edit, part_means
from editgan_core.eval import seeds
from editgan_core.eval import strict_metrics as sm
from editgan_core.vectors import EditVector, compose


def test_room_and_success_count_only_the_move():
    assert sm.has_room(0.2, 1.0, 0, 1, 0.25) and not sm.has_room(0.8, 1.0, 0, 1, 0.25)
    assert sm.has_room(0.0, -1.0, -1, 1, 0.25) and not sm.has_room(-0.6, -1.0, -1, 1, 0.25)
    # smile range 2: a quarter is 0.5 units
    assert sm.moved(-0.2, 0.31, 1.0, -1, 1, 0.25) and not sm.moved(-0.2, 0.29, 1.0, -1, 1, 0.25)
    assert not sm.moved(0.9, 0.95, 1.0, -1, 1, 0.25)  # near the target already: not a success any more
    assert sm.moved(0.0, -0.6, -1.0, -1, 1, 0.25) and not sm.moved(0.0, 0.6, -1.0, -1, 1, 0.25)


def test_wilson_interval_matches_known_values():
    lo, hi = sm.wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    assert sm.wilson(0, 10)[0] == 0 and sm.wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-3)
    assert sm.wilson(10, 10)[0] == pytest.approx(0.7225, abs=1e-3) and sm.wilson(10, 10)[1] == pytest.approx(1)
    assert sm.wilson(0, 0) == (0.0, 1.0)
    mean, half = sm.mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert mean == 2.0 and half == pytest.approx(1.96 * 1 / np.sqrt(3), rel=1e-3)


def test_entanglement_is_signed_and_in_range_units():
    ranges = {"smile": (-1, 1), "mouth_open": (0, 1), "eye_open": (0, 1)}
    out = sm.entanglement({"smile": 0.0, "mouth_open": 0.1, "eye_open": 0.5},
                          {"smile": 0.4, "mouth_open": 0.9, "eye_open": 0.45}, ranges, "mouth_open")
    assert out == pytest.approx({"smile": 0.2, "eye_open": -0.05})


def test_colour_drift_reads_persisting_parts_only():
    before_labels = np.zeros((8, 8), np.int64)
    before_labels[1:3, 1:3] = 5  # iris, kept by the edit
    before_labels[5:7, 2:6] = 8  # lips
    target_labels = before_labels.copy()
    target_labels[5:7, 2:6] = 9  # the edit turns the lips into mouth interior
    target_labels[0, 7] = 5  # a single-pixel part is too small to have a colour
    masks = sm.persisting_masks(before_labels, target_labels)
    assert sorted(masks) == [0, 5] and masks[5].sum() == 4
    before = np.full((8, 8, 3), 100, np.uint8)
    after = before.copy()
    after[1:3, 1:3, 1] = 151  # irises turn green: +51 on one channel = 20 % of the range
    after[5:7, 2:6] = 0  # the edited part changes freely
    drift = sm.colour_drift(before, after, masks)
    assert drift[5] == pytest.approx(0.2) and drift[0] == 0


def test_region_and_outside_change():
    before = np.zeros((10, 10), np.int64)
    before[4:6, 4:6] = 8
    region = sm.true_region(before, before, [8], dilate=1)
    assert region.sum() == 16 and region[3, 3] and not region[2, 2]
    a = np.zeros((10, 10, 3), np.uint8)
    b = a.copy()
    b[4:6, 4:6] = 255  # inside: ignored
    assert sm.outside_change(a, b, region) == 0
    b[0, 0] = 255
    assert sm.outside_change(a, b, region) == pytest.approx(1 / 84)


def test_identity_loss():
    assert sm.identity_loss({"skin_tone": 0.2, "jaw": 0.5}, {"skin_tone": 0.3, "jaw": 0.5},
                            {"skin_tone": (0, 1), "jaw": (0, 1)}) == pytest.approx(0.05)


def test_seed_table_is_disjoint_and_matches_the_training_modules(monkeypatch):
    from editgan_core.train import attributes, data, encoder, presets, segmenter

    seeds.check_disjoint()
    table = seeds.LEARNED_FROM
    assert table["preset painting (train.presets)"] == presets.PRESET_SEEDS
    assert table["segmenter annotations"] == segmenter.ANNOTATION_SEEDS
    enc = table["encoder training renders"]
    assert (enc.start, enc.stop) == (encoder.REAL_SEED_START, encoder.REAL_SEED_START + encoder.REAL_SEED_COUNT)
    judge = table["attribute net (the judge) training"]
    assert (judge.start, judge.stop) == (attributes.SEED_BASE, data.TRAIN_SEED_BASE)
    monkeypatch.setattr(seeds, "STRICT_HELDOUT", range(99_000, 120_000))
    with pytest.raises(ValueError, match="preset painting"):
        seeds.check_disjoint()


def test_a_stray_painted_pixel_does_not_pull_its_class_into_the_region():
    original = np.ones((32, 32), np.int64)  # skin
    original[:6] = 2  # hair
    original[20:24, 10:20] = 8  # lips
    edited = original.copy()
    edited[18:20, 10:20] = 8  # a bigger mouth: 20 pixels of lips over skin
    edited[5, 0] = 1  # a slip of the brush on the hair
    groups = {"smile": [8, 9], "hair": [2]}
    classes = infer_edit_classes(original, edited, groups)
    assert classes == [8, 9]
    region = edit_region(original, edited, classes, dilate=1)
    assert region[5, 0] and not region[0, 16]  # the stray pixel itself is edited, not all the hair
    edited[:3, :] = 1  # painting a third of the hair away is an edit of the hair
    assert 2 in infer_edit_classes(original, edited, groups)


def test_layer_restriction_keeps_delta_zero_outside_and_vectors_carry_the_range():
    assert layer_mask(4, (1, 3)).flatten().tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError):
        layer_mask(4, (3, 5))
    target = torch.randn(1, 4, 3)

    def objective(latent):
        loss = (latent - target).pow(2).sum()
        return loss, {"ce": loss.item()}

    result = optimise_edit(objective, torch.zeros(1, 4, 3), None, 50, 0.1, layers=(1, 3))
    assert result.best[:, [0, 3]].abs().max() == 0 and result.best[:, 1:3].abs().min() > 0
    vec = EditVector(delta=torch.ones(4, 3), name="v", bundle_id="b")
    assert vec.layers == (0, 4)
    narrow = vec.with_layers(1, 3)
    assert narrow.extra["layers"] == [1, 3] and torch.equal(narrow.delta, vec.delta)
    assert compose(torch.zeros(4, 3), [(narrow, 2.0)])[:, 0].tolist() == [0, 2, 2, 0]
    with pytest.raises(ValueError, match="layer range"):
        vec.with_layers(2, 9)


def test_choose_layers_prefers_the_shortest_range_that_does_the_job():
    assert candidate_ranges(4) == [(0, 2), (0, 4), (2, 4)]
    target = torch.zeros(1, 6, 2)
    target[:, 2:4] = 1.0  # the edit lives on rows 2..3 only

    def objective(latent):
        return None, {"ce": float((latent - target).pow(2).sum())}

    delta = target.clone()
    delta[:, 5] = 0.05  # learned noise on another row
    best, losses = choose_layers(objective, torch.zeros(1, 6, 2), delta)
    assert best == (2, 4) and losses[(2, 4)] < losses[(0, 6)] < losses[(0, 2)]


def test_part_colour_term_sees_every_persisting_part():
    labels = torch.zeros(1, 6, 6, dtype=torch.int64)
    labels[:, :2, :2] = 5
    edited = labels.clone()
    edited[:, 4:, 4:] = 8  # a new part: no colour to keep
    image = torch.zeros(1, 3, 6, 6)
    image[:, 1, :2, :2] = 0.5
    target = EditTarget(edited, torch.zeros(1, 6, 6, dtype=torch.bool), image, labels)
    present = target.part_masks.sum((2, 3)) > 0
    assert present[0].nonzero().flatten().tolist() == [0, 5]
    assert target.part_colours[0, 5].tolist() == [0.0, 0.5, 0.0]
    assert part_means(image, target.part_masks)[0, 0].tolist() == [0.0, 0.0, 0.0]
    free = EditTarget(edited, torch.zeros(1, 6, 6, dtype=torch.bool), image, labels, free_classes=[5, 8])
    assert (free.part_masks.sum((2, 3)) > 0)[0].nonzero().flatten().tolist() == [0]  # the edited part may change


def test_refinement_does_not_hold_the_edited_parts_colour(tiny_bundle, monkeypatch):
    from editgan_core import pipeline as pipeline_module
    from editgan_core.pipeline import EditGANPipeline

    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    seen = []
    real = pipeline_module.EditTarget
    monkeypatch.setattr(pipeline_module, "EditTarget", lambda *a, **k: seen.append(k) or real(*a, **k))
    vector = EditVector(delta=0.3 * torch.ones(pipe.latent_shape), name="v", bundle_id=pipe.bundle.id,
                        class_ids=[8, 9])
    pipe.refine(pipe.sample_latent(0), [(vector, 1.0)], steps=1)
    assert seen and list(seen[0]["free_classes"]) == [8, 9]


def test_strict_evaluation_and_auto_layers_run_end_to_end_on_the_tiny_bundle(tiny_bundle, tmp_path):
    from editgan_core.domains import get_domain
    from editgan_core.editing import EditWeights
    from editgan_core.eval.strict import EditTask, EmbeddingCache, evaluate, faces_for, vector_editor
    from editgan_core.models.attribute_net import AttributeNet
    from editgan_core.pipeline import EditGANPipeline
    from editgan_core.train.attributes import domain_targets

    torch.manual_seed(0)
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    domain = get_domain("faces")
    judge = AttributeNet(domain_targets(domain), input_size=pipe.resolution, channels=(4, 8), hidden=16).eval()
    task = EditTask("smile", "smile", 1.0, (8, 9))
    cases = faces_for(task, domain, 3, 0.25, pipe.resolution)
    assert len(cases) == 3 and all(c.seed in seeds.STRICT_HELDOUT and c.attrs["smile"] <= 0.5 for c in cases)
    latents = [pipe.embed(c.image, steps=0).latent for c in cases]
    painted = [pipe.render(w).labels.copy() for w in latents]
    for p in painted:
        p[-4:, :] = 8  # paint lips along the bottom
    shared = pipe.learn_shared_edit(latents, painted, [8, 9], steps=2, lr=0.05,
                                    weights=EditWeights(part_colour=100.0, encoder=0.0), layers="auto")
    start, stop = shared.layers
    assert shared.delta[:start].abs().sum() == 0 and shared.delta[stop:].abs().sum() == 0
    vector = EditVector(delta=shared.delta, name="smile", bundle_id=pipe.bundle.id, class_ids=[8, 9],
                        extra={"layers": list(shared.layers)})
    cache = EmbeddingCache(tmp_path / "cache.pt")
    images: dict = {}
    result = evaluate(pipe, judge, domain, task, cases, {"vector": vector_editor(vector)}, cache, 1, 0.25, images)
    assert set(result) == {"vector", "ceiling", "renders"}
    assert images["vector"].shape == (3, pipe.resolution, pipe.resolution, 3) and "renders" not in images
    renders = result["renders"]  # the renderer's own true edit: nothing changes outside its region
    assert renders["n"] == 3 and renders["outside"] == (0.0, 0.0)
    assert max(abs(m) for m, _ in renders["colour"].values()) < 0.01
    summary = result["vector"]
    assert summary["n"] == 3 and 0 <= summary["success"] <= 1 and "smile" not in summary["entanglement"]
    assert summary["colour"] and all(h >= 0 for _, h in summary["colour"].values())
    again = EmbeddingCache(tmp_path / "cache.pt")
    assert set(again.latents) == {f"{c.seed}" for c in cases} | {f"{c.seed}:smile=1" for c in cases}


def test_coherent_mean_keeps_the_rows_every_example_moves_alike():
    from editgan_core.edit_layers import coherent_mean, row_coherence

    torch.manual_seed(0)
    deltas = 0.5 * torch.randn(32, 4, 8)  # each example's own noise on every row
    deltas[:, 1] += torch.ones(8)  # row 1 carries the edit
    coherence = row_coherence(deltas)
    assert coherence[1] > 0.7 and (coherence[[0, 2, 3]] < 0.4).all()
    mean, _ = coherent_mean(deltas, 0.5)
    assert torch.allclose(mean[1], deltas.mean(0)[1]) and mean[[0, 2, 3]].abs().max() == 0
    assert torch.equal(coherent_mean(deltas, 0.0)[0], deltas.mean(0))


def test_median_of_pairs_ignores_a_pair_whose_embedding_went_astray():
    from editgan_core.train.true_targets import mean_delta, median_delta

    torch.manual_seed(0)
    originals = torch.randn(9, 3, 8)
    targets = originals + 1.0 + 0.1 * torch.randn(9, 3, 8)  # every pair moves every coordinate by about 1
    targets[0] += 40.0  # one embedding failed
    mean, _ = mean_delta(originals, targets, 0.0)
    median, extra = median_delta(originals, targets, 0.0)
    assert (mean - 1.0).abs().min() > 3.0  # the mean is dragged by the one pair
    assert (median - 1.0).abs().max() < 0.3 and extra["estimator"] == "median"
    targets[:, 2] = originals[:, 2] + torch.randn(9, 8)  # row 2 carries only noise: a coherence cut drops it
    median, extra = median_delta(originals, targets, 0.6)
    assert 2 not in extra["rows"] and median[2].abs().max() == 0 and median[0].abs().min() > 0.5


def test_pairs_method_stores_the_mean_true_target_difference(tiny_bundle, tmp_path):
    from editgan_core.domains import get_domain
    from editgan_core.embedding_cache import EmbeddingCache
    from editgan_core.pipeline import EditGANPipeline
    from editgan_core.train import presets
    from editgan_core.train.true_targets import true_target_latents
    from editgan_core.vectors import load_vector

    out = tmp_path / "v"
    assert presets.main(["--bundle", str(tiny_bundle), "--device", "cpu", "--only", "open_mouth", "--faces", "3",
                         "--embed-steps", "0", "--method", "pairs", "--out", str(out),
                         "--cache", str(tmp_path / "cache"), "--no-hold"]) == 0
    vector = load_vector(out / "open_mouth.safetensors")
    extra = vector.extra
    assert "held_attributes" not in extra
    assert extra["method"] == "pairs" and len(extra["seeds"]) == 3 and extra["attribute"] == "mouth_open"
    assert all(s in presets.PRESET_SEEDS for s in extra["seeds"])
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    spec = next(s for s in presets.PRESETS if s.name == "open_mouth")
    originals, targets = true_target_latents(pipe, get_domain("faces"), spec.attribute, spec.value, extra["seeds"], 0)
    expected = (targets - originals).mean(0)
    kept = torch.zeros(expected.shape[0], dtype=torch.bool)
    kept[extra["rows"]] = True
    assert torch.allclose(vector.delta[kept], expected[kept], atol=1e-5) and (vector.delta[~kept] == 0).all()
    cached = EmbeddingCache(next((tmp_path / "cache").glob("*.pt"))).latents
    assert len(cached) == 6  # each face and its true target, embedded once


def test_attribute_direction_moves_the_attribute_up_from_both_halves_of_its_range(monkeypatch):
    from editgan_core.domains import get_domain
    from editgan_core.train import true_targets

    domain = get_domain("faces")
    calls = []

    def fake_latents(_pipeline, _domain, attribute, value, seeds, _steps, _cache=None):
        drawn = torch.tensor([domain.sample_attributes(s)[attribute] for s in seeds])
        calls.append((value, drawn))
        return drawn[:, None, None].expand(-1, 2, 3), torch.full((len(seeds), 2, 3), float(value))

    monkeypatch.setattr(true_targets, "true_target_latents", fake_latents)
    direction = true_targets.attribute_direction(None, domain, "nose_size", range(1000, 1100), 0, pairs=8)
    (raised_to, lower), (lowered_to, upper) = calls
    assert (raised_to, lowered_to) == (1.0, 0.0) and len(lower) == len(upper) == 4
    assert (lower < 0.5).all() and (upper >= 0.5).all()
    expected = torch.cat([1.0 - lower, upper - 0.0]).mean()
    assert direction.shape == (2, 3) and torch.allclose(direction, expected.expand(2, 3))


def test_a_preset_holds_other_attributes_with_their_directions(tiny_bundle, tmp_path):
    from editgan_core.embedding_cache import EmbeddingCache
    from editgan_core.model_card import _vector_provenance
    from editgan_core.pipeline import EditGANPipeline
    from editgan_core.train import presets
    from editgan_core.train.true_targets import attribute_direction
    from editgan_core.vectors import load_vector

    common = ["--bundle", str(tiny_bundle), "--device", "cpu", "--only", "open_eyes", "--faces", "2",
              "--embed-steps", "2", "--method", "pairs", "--cache", str(tmp_path / "cache")]
    assert presets.main([*common, "--out", str(tmp_path / "plain"), "--no-hold"]) == 0
    assert presets.main([*common, "--out", str(tmp_path / "held")]) == 0
    plain = load_vector(tmp_path / "plain" / "open_eyes.safetensors")
    held = load_vector(tmp_path / "held" / "open_eyes.safetensors")
    spec = next(s for s in presets.PRESETS if s.name == "open_eyes")
    assert spec.held and held.extra["held_attributes"] == dict(spec.held)
    assert held.default_scale == plain.default_scale == spec.default_scale
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    cache = EmbeddingCache(next((tmp_path / "cache").glob("*.pt")))
    added = sum(c * attribute_direction(pipe, pipe.bundle.domain_module(), a, presets.PRESET_SEEDS, 2, cache)
                for a, c in spec.held) / spec.default_scale
    assert torch.allclose(held.delta, plain.delta + added, atol=1e-5)
    assert not torch.allclose(held.delta, plain.delta, atol=1e-3)
    said = " ".join(_vector_provenance(held))
    assert "held still" in said and all(f"{a} {c:+g}" in said for a, c in spec.held)


def test_inside_rgb_term_pulls_only_the_region_towards_the_edited_picture():
    from types import SimpleNamespace

    from editgan_core.editing import EditObjective, EditWeights

    class Generator:  # the latent is the picture: (1, 12) -> (1, 3, 2, 2)
        def synthesis(self, latent, noise=None, return_features=False):
            return SimpleNamespace(image=latent.reshape(1, 3, 2, 2), features=None)

    def segmenter(_features, pixels):
        return torch.zeros(len(pixels), 2)

    region = torch.tensor([[[True, False], [False, False]]])
    target = EditTarget(torch.zeros(1, 2, 2, dtype=torch.int64), region, torch.zeros(1, 3, 2, 2),
                        inside_image=torch.ones(1, 3, 2, 2))
    objective = EditObjective(Generator(), segmenter, target, EditWeights(inside_rgb=10.0, encoder=0.0), noise=[])
    edited = torch.zeros(1, 3, 2, 2)
    edited[:, :, 0, 0] = 1.0  # the edited picture inside r, the original outside
    _, terms = objective(edited.reshape(1, 12))
    assert terms["inside_rgb"] == 0 and terms["l2"] == 0
    _, terms = objective(torch.ones(1, 12))  # edited everywhere: only the outside term sees it
    assert terms["inside_rgb"] == 0 and terms["l2"] == pytest.approx(1.0)
    loss, terms = objective(torch.zeros(1, 12))  # nothing edited: the inside term sees it
    assert terms["inside_rgb"] == pytest.approx(1.0) and loss.item() == pytest.approx(10.0 + np.log(2))
    off = EditObjective(Generator(), segmenter, target, EditWeights(encoder=0.0), noise=[])
    assert "inside_rgb" not in off(torch.zeros(1, 12))[1]


def test_pairs_fit_tunes_the_mean_and_records_its_settings(tiny_bundle, tmp_path):
    from editgan_core.train import presets
    from editgan_core.vectors import load_vector

    common = ["--bundle", str(tiny_bundle), "--device", "cpu", "--only", "smile", "--faces", "2", "--embed-steps", "0",
              "--cache", str(tmp_path / "cache")]
    assert presets.main([*common, "--method", "pairs", "--out", str(tmp_path / "mean")]) == 0
    assert presets.main([*common, "--method", "pairs_fit", "--steps", "3", "--out", str(tmp_path / "fit")]) == 0
    assert presets.main([*common, "--method", "pairs_median", "--out", str(tmp_path / "median")]) == 0
    mean = load_vector(tmp_path / "mean" / "smile.safetensors")
    median = load_vector(tmp_path / "median" / "smile.safetensors")
    assert median.extra["method"] == "pairs_median" and median.extra["seeds"] == mean.extra["seeds"]
    assert torch.allclose(median.delta, mean.delta, atol=1e-5)  # two pairs: the median is their mean
    fit = load_vector(tmp_path / "fit" / "smile.safetensors")
    extra = fit.extra
    assert extra["method"] == "pairs_fit" and extra["steps"] == 3 and extra["inside_rgb"] > 0
    assert extra["seeds"] == mean.extra["seeds"] and extra["loss_best"] <= extra["loss_start"]
    assert not torch.equal(fit.delta, mean.delta)


def test_refinement_that_keeps_the_step_cannot_shorten_the_applied_vector():
    init = torch.zeros(1, 3, 2)
    init[0, 0, 0] = 1.0  # the applied vector
    side = torch.zeros(1, 3, 2)
    side[0, 1, 1] = 0.5  # a side effect the refinement should remove

    def objective(latent):  # pulls everything back to the original (zero): plain refinement shortens the step
        loss = latent.pow(2).sum()
        return loss, {"ce": loss.item()}

    plain = optimise_edit(objective, torch.zeros(1, 3, 2), init + side, 200, 0.05)
    kept = optimise_edit(objective, torch.zeros(1, 3, 2), init + side, 200, 0.05, keep_init_step=True)
    assert plain.best[0, 0, 0] < 0.5
    along = (kept.best * (init + side)).sum() / (init + side).norm()
    assert along == pytest.approx((init + side).norm().item(), abs=1e-4)


def test_pipeline_refinement_keeps_the_applied_step_by_default(tiny_bundle):
    from editgan_core.pipeline import EditGANPipeline

    torch.manual_seed(0)
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    latent = pipe.mean_latent().cpu()
    vector = EditVector(delta=0.5 * torch.randn(*pipe.latent_shape), name="v", bundle_id=pipe.bundle.id,
                        class_ids=[8, 9])
    step = vector.delta
    kept = pipe.refine(latent, [(vector, 1.0)], steps=5, lr=0.2)
    assert (kept.delta * step).sum() / step.norm() == pytest.approx(step.norm().item(), rel=1e-4)
    assert not torch.allclose(kept.delta, step)  # it did refine, around the step
    plain = pipe.refine(latent, [(vector, 1.0)], steps=5, lr=0.2, keep_step=False)
    assert (plain.delta * step).sum() / step.norm() != pytest.approx(step.norm().item(), rel=1e-4)


def test_refinement_can_first_keep_this_faces_other_parts(tiny_bundle):
    from editgan_core.pipeline import EditGANPipeline

    torch.manual_seed(0)
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    latent = pipe.sample_latent(3).cpu()
    vector = EditVector(delta=0.5 * torch.randn(*pipe.latent_shape), name="v", bundle_id=pipe.bundle.id,
                        class_ids=[8, 9])
    kept = pipe.refine(latent, [(vector, 1.0)], steps=0, keep_parts=True)
    figures = kept.metrics
    assert kept.steps_done == 0 and figures["colour_change_after"] < 0.5 * figures["colour_change_before"]
    step = vector.delta
    assert (kept.delta * step).sum() / step.norm() == pytest.approx(step.norm().item(), rel=1e-4)  # the edit's length
    assert not torch.allclose(kept.delta, step)
    plain = pipe.refine(latent, [(vector, 1.0)], steps=0)
    assert torch.allclose(plain.delta, step) and "colour_change_after" not in plain.metrics


def run_strict_until_stopped(strict, bundle, monkeypatch, *extras: list[str]) -> None:
    """``eval.strict`` on the smile preset once per ``extras``, with a stand-in judge, each run stopped by the
    test's own patched step raising StopIteration."""
    monkeypatch.setattr(strict.AttributeNet, "load", staticmethod(lambda _path: torch.nn.Identity()))
    for extra in extras:
        with pytest.raises(StopIteration):
            strict.main(["--bundle", str(bundle), "--device", "cpu", "--vectors", "smile", *extra])


def test_strict_benchmark_judges_per_face_kept_parts_on_request(tiny_bundle, monkeypatch):
    from editgan_core.eval import strict

    judged = []

    def evaluate(pipeline, judge, domain, task, cases, editors, *rest):
        judged.append(sorted(editors))
        raise StopIteration

    monkeypatch.setattr(strict, "faces_for", lambda *a, **k: [])
    monkeypatch.setattr(strict, "evaluate", evaluate)
    run_strict_until_stopped(strict, tiny_bundle, monkeypatch, [], ["--keep-parts"])
    assert judged == [["vector"], ["keep", "vector"]]


def test_strict_benchmark_judges_tuning_faces_on_request(tiny_bundle, monkeypatch):
    from editgan_core.eval import strict

    asked = []

    def faces_for(task, domain, n, fraction, resolution, seeds=seeds.STRICT_HELDOUT):
        asked.append(seeds)
        raise StopIteration  # the seed range is all this test needs

    monkeypatch.setattr(strict, "faces_for", faces_for)
    run_strict_until_stopped(strict, tiny_bundle, monkeypatch, [], ["--tuning"])
    assert asked == [seeds.STRICT_HELDOUT, seeds.TUNING]


def _summary(success, nose, irises):
    return {"n": 10, "success": success, "success_ci": (success - 0.1, success + 0.1),
            "entanglement": {"nose_size": (nose, 0.01)}, "colour": {5: (irises, 0.002)}, "outside": (0.004, 0.001)}


def test_strict_benchmark_prints_the_ceilings_own_row(tiny_bundle, monkeypatch, capsys):
    from editgan_core.eval import strict

    def evaluate(*_args):
        return {"ceiling": _summary(0.8, 0.09, 0.01), "vector": _summary(0.75, 0.02, 0.03),
                "renders": _summary(0.9, 0.0, 0.0)}

    monkeypatch.setattr(strict.AttributeNet, "load", staticmethod(lambda _path: torch.nn.Identity()))
    monkeypatch.setattr(strict, "faces_for", lambda *a, **k: [])
    monkeypatch.setattr(strict, "evaluate", evaluate)
    strict.main(["--bundle", str(tiny_bundle), "--device", "cpu", "--vectors", "smile"])
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("smile")}
    assert set(rows) == {"ceiling", "vector", "renders"}
    assert rows["ceiling"].endswith("+-+")  # the true edit itself reads as a bigger nose
    assert rows["vector"].endswith("++-")  # the vector keeps the nose but tints the irises


def test_suggested_strength_meets_most_targets_then_stays_within_the_ceiling_then_is_strongest():
    from editgan_core.eval.strict import suggest_strength

    ceiling = _summary(0.9, 0.02, 0.08)  # the embedded true target itself tints a part by 8 %
    by_strength = {0.5: _summary(0.6, 0.01, 0.03),  # too weak: success under 85 % of the ceiling
                   0.6: _summary(0.85, 0.02, 0.05),
                   0.7: _summary(0.9, 0.04, 0.07),
                   0.8: _summary(0.95, 0.045, 0.09),  # as many targets, but tints more than the ceiling
                   1.0: _summary(0.95, 0.08, 0.12)}
    assert suggest_strength(by_strength, ceiling) == 0.7
    by_strength[0.6] = _summary(0.85, 0.02, 0.015)  # now meets all three
    assert suggest_strength(by_strength, ceiling) == 0.6
    # A weak strength that keeps every side effect small but does not make the edit loses to any that does; where
    # every side effect is beyond the ceiling's too, the least excess wins, not the strongest.
    weak, mid, strong = _summary(0.3, 0.0, 0.0), _summary(0.9, 0.06, 0.09), _summary(0.95, 0.1, 0.2)
    assert suggest_strength({0.3: weak, 1.0: mid, 1.5: strong}, ceiling) == 1.0


def test_strict_benchmark_judges_each_strength_and_suggests_one(tiny_bundle, monkeypatch, capsys):
    from editgan_core.eval import strict

    judged = []

    def evaluate(pipeline, judge, domain, task, cases, editors, *_rest):
        judged.append(sorted(editors))
        return {"ceiling": _summary(0.8, 0.01, 0.01), "vector": _summary(0.8, 0.06, 0.03),
                "x0.5": _summary(0.75, 0.03, 0.01), "x1.5": _summary(0.9, 0.09, 0.05)}

    monkeypatch.setattr(strict.AttributeNet, "load", staticmethod(lambda _path: torch.nn.Identity()))
    monkeypatch.setattr(strict, "faces_for", lambda *a, **k: [])
    monkeypatch.setattr(strict, "evaluate", evaluate)
    strict.main(["--bundle", str(tiny_bundle), "--device", "cpu", "--vectors", "smile", "--scales", "0.5", "1.5"])
    assert judged == [["vector", "x0.5", "x1.5"]]
    assert "smile: suggested default strength 0.5" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        strict.main(["--bundle", str(tiny_bundle), "--device", "cpu", "--scales", "nan"])
