"""Issue #24: correcting a shared vector's side effects, and how Table 1 names what a vector was learned from."""

from __future__ import annotations

import pytest
import torch

from editgan_core.side_effects import SideEffectSettings, _face, keep_side_effects, worst_colour_change


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    from editgan_core.pipeline import EditGANPipeline

    return EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)


def test_correction_lowers_colour_change_and_keeps_the_step(pipe):
    latents = torch.cat([pipe.sample_latent(s) for s in range(3)])
    delta = 0.6 * torch.randn(pipe.latent_shape, generator=torch.Generator().manual_seed(0))
    corrected, info = keep_side_effects(pipe, latents, delta, class_ids=[8, 9], settings=SideEffectSettings(iters=2))
    kept = info["side_effects"]
    assert kept["faces"] == 3 and kept["colour_change_after"] < kept["colour_change_before"]
    step = (corrected - delta).flatten()
    assert step.norm() > 0 and abs(float(step @ delta.flatten())) < 1e-3 * float(step.norm() * delta.norm())
    faces = [_face(pipe, w[None], delta, [8, 9], SideEffectSettings()) for w in latents]
    assert worst_colour_change(pipe, faces, corrected) == pytest.approx(kept["colour_change_after"], abs=1e-4)


def test_edited_parts_have_no_colour_row_and_keep_their_new_size(pipe):
    w = pipe.sample_latent(0)
    delta = torch.zeros(pipe.latent_shape)
    classes = pipe.render(w).labels
    edited = int(torch.from_numpy(classes).flatten().mode().values)  # the largest part, surely present
    face = _face(pipe, w, delta, [edited], SideEffectSettings())
    assert face.masks[0, edited].sum() == 0
    k = face.masks.shape[1]
    assert (face.scale[3 * edited:3 * edited + 3] == 0).all()
    assert len(face.reference) == 3 * k + len(pipe.bundle.classes)


def test_given_part_masks_decide_where_colour_is_kept(pipe):
    latents = torch.cat([pipe.sample_latent(s) for s in range(2)])
    delta = 0.6 * torch.randn(pipe.latent_shape, generator=torch.Generator().manual_seed(1))
    n_classes, size = len(pipe.bundle.classes), pipe.resolution
    masks = torch.zeros(2, n_classes, size, size)
    masks[:, 0, : size // 2] = 1  # one "part": the top half of each picture
    corrected, info = keep_side_effects(pipe, latents, delta, class_ids=[8, 9], part_masks=masks)
    kept = info["side_effects"]
    assert kept["part_masks"] == "given" and kept["colour_change_after"] < kept["colour_change_before"]
    faces = [_face(pipe, w[None], delta, [8, 9], SideEffectSettings(), masks[i:i + 1]) for i, w in enumerate(latents)]
    assert faces[0].masks.shape[1] == n_classes and faces[0].scale[3:3 * n_classes].sum() == 0  # one part only
    assert worst_colour_change(pipe, faces, corrected) == pytest.approx(kept["colour_change_after"], abs=1e-4)
    plain, _ = keep_side_effects(pipe, latents, delta, class_ids=[8, 9])
    assert not torch.allclose(plain, corrected)


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(1, 3, 8, 8), "one stack per latent"),
    (torch.full((2, 3, 0, 0), 0.5), "one stack per latent"),
    ("nan", "in \\[0, 1\\]"),
])
def test_part_masks_are_checked(pipe, bad, message):
    latents = torch.cat([pipe.sample_latent(s) for s in range(2)])
    if isinstance(bad, str):
        bad = torch.full((2, 3, pipe.resolution, pipe.resolution), float("nan"))
    with pytest.raises(ValueError, match=message):
        keep_side_effects(pipe, latents, torch.zeros(pipe.latent_shape), [8], part_masks=bad)


def test_true_part_masks_are_the_renderers_persisting_parts():
    import numpy as np

    from editgan_core.domains import faces
    from editgan_core.eval.strict_metrics import persisting_masks
    from editgan_core.train.true_targets import true_part_masks

    edited = list(faces.EDIT_CLASSES["smile"])
    masks = true_part_masks(faces, "smile", 1.0, [3, 4], 32, len(faces.CLASSES), edited)
    assert masks.shape == (2, len(faces.CLASSES), 32, 32)
    attrs = faces.sample_attributes(4)
    expected = persisting_masks(faces.render(attrs, 32).labels, faces.render({**attrs, "smile": 1.0}, 32).labels)
    for c in range(len(faces.CLASSES)):
        want = expected.get(c, np.zeros((32, 32), bool)) if c not in edited else np.zeros((32, 32), bool)
        assert np.array_equal(masks[1, c].numpy().astype(bool), want), c
    assert masks[:, edited].sum() == 0 and masks.sum() > 0


def test_settings_are_checked():
    with pytest.raises(ValueError, match="ridge"):
        SideEffectSettings(ridge=0)
    with pytest.raises(ValueError, match="iters"):
        SideEffectSettings(iters=0)


def test_presets_command_refuses_a_bad_ridge_before_loading(capsys):
    from editgan_core.train import presets

    with pytest.raises(SystemExit):
        presets.main(["--bundle", "no/such/bundle", "--keep-side-effects", "-1"])
    assert "--keep-side-effects" in capsys.readouterr().err


def test_presets_command_refuses_renderer_masks_without_pairs(capsys):
    from editgan_core.train import presets

    with pytest.raises(SystemExit):
        presets.main(["--bundle", "no/such/bundle", "--method", "paper", "--part-masks", "renderer"])
    assert "true target" in capsys.readouterr().err


def test_learn_preset_refuses_unknown_or_impossible_part_masks(pipe):
    from editgan_core.train.presets import PRESETS, learn_preset

    domain = pipe.bundle.domain_module()
    spec = next(s for s in PRESETS if s.name == "open_mouth")
    for masks, method, message in (("exact", "pairs", "choose from"), ("renderer", "paper", "true target")):
        with pytest.raises(ValueError, match=message):
            learn_preset(pipe, domain, spec, faces=1, steps=1, embed_steps=0, method=method,
                         side_effects=SideEffectSettings(), part_masks=masks)


def test_a_preset_is_learned_on_its_own_number_of_faces_unless_told(pipe):
    import dataclasses

    from editgan_core.train.presets import PRESETS, learn_preset

    domain = pipe.bundle.domain_module()
    spec = dataclasses.replace(next(s for s in PRESETS if s.name == "open_mouth"), faces=3)
    own = learn_preset(pipe, domain, spec, faces=None, steps=0, embed_steps=0, method="pairs")
    told = learn_preset(pipe, domain, spec, faces=2, steps=0, embed_steps=0, method="pairs")
    assert len(own.extra["seeds"]) == 3 and len(told.extra["seeds"]) == 2


def test_presets_command_records_the_correction(tiny_bundle, tmp_path):
    from editgan_core.train import presets
    from editgan_core.vectors import load_vector

    # a preset whose spec neither corrects nor holds, so "plain" is the bare mean
    name = next(s.name for s in presets.PRESETS if s.side_effects is None and not s.held)
    common = ["--bundle", str(tiny_bundle), "--device", "cpu", "--only", name, "--faces", "2",
              "--embed-steps", "0", "--method", "pairs", "--cache", str(tmp_path / "cache")]
    assert presets.main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert presets.main([*common, "--out", str(tmp_path / "kept"), "--keep-side-effects", "0.5"]) == 0
    plain = load_vector(tmp_path / "plain" / f"{name}.safetensors")
    kept = load_vector(tmp_path / "kept" / f"{name}.safetensors")
    assert kept.extra["side_effects"]["ridge"] == 0.5 and kept.extra["side_effects"]["faces"] == 2
    assert "side_effects" not in plain.extra
    moved = float(((kept.delta - plain.delta) * kept.default_scale).norm())
    assert moved == pytest.approx(kept.extra["side_effects"]["correction_norm"], abs=1e-3)
    assert kept.extra["side_effects"]["part_masks"] == "segmenter"
    assert presets.main([*common, "--out", str(tmp_path / "true"), "--keep-side-effects", "--part-masks",
                         "renderer"]) == 0
    true = load_vector(tmp_path / "true" / f"{name}.safetensors")
    assert true.extra["side_effects"]["part_masks"] == "renderer"
    assert not torch.allclose(true.delta, kept.delta)


def test_table1_names_what_each_vector_was_learned_from():
    from editgan_core.eval.table1 import vector_annotations
    from editgan_core.vectors import EditVector

    def vector(method):
        return EditVector(delta=torch.zeros(2, 4), name="v", bundle_id="b",
                          extra={"method": method, "seeds": list(range(48))})

    assert vector_annotations(vector("pairs")) == "0 painted; 48 renderer pairs (true targets), once"
    assert vector_annotations(vector("paper")) == "48 painted maps, once"


def test_the_correction_jacobian_skips_only_rows_that_are_zero_anyway():
    from editgan_core.side_effects import _jacobian_and_value

    torch.manual_seed(0)
    weights = torch.tensor([1.0, 0.0, 2.0, 0.0])
    a = torch.randn(4, 3, 2)

    def fn(x):
        return torch.tanh((a * x).sum((1, 2))) * weights

    x = torch.randn(3, 2)
    jacobian, value = _jacobian_and_value(fn, x, weights != 0)
    assert torch.allclose(jacobian, torch.autograd.functional.jacobian(fn, x).flatten(1))
    assert torch.allclose(value, fn(x)) and not jacobian[[0, 2]].eq(0).all()
