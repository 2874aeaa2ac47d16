"""Issue #24: the side-effect correction holding every part's size and place to what its true edit does."""

from __future__ import annotations

import pytest
import torch

from editgan_core.side_effects import (
    SideEffectSettings,
    TrueChanges,
    _face,
    _rows,
    keep_side_effects,
    label_geometry,
)


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    from editgan_core.pipeline import EditGANPipeline

    return EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)


def _no_change(n: int, k: int, present: bool = True) -> TrueChanges:
    return TrueChanges(torch.zeros(n, k), torch.zeros(n, 2, k), torch.full((n, k), present))


def test_label_geometry_reads_share_centroid_and_pixels():
    labels = torch.zeros(5, 5, dtype=torch.long)
    labels[0, 0] = 1  # top-left corner
    labels[2:, 4] = 2  # right column, lower three rows
    area, centroid, pixels = label_geometry(labels, 4)
    assert pixels.tolist() == [21, 1, 3, 0]
    assert area.tolist() == pytest.approx([21 / 25, 1 / 25, 3 / 25, 0])
    assert centroid[:, 1].tolist() == pytest.approx([-1.0, -1.0])
    assert centroid[:, 2].tolist() == pytest.approx([1.0, 0.5])
    assert centroid[:, 3].tolist() == [0.0, 0.0]  # an absent class has no centroid to speak of


def test_true_changes_follow_the_renderer():
    from editgan_core.domains import faces
    from editgan_core.domains.faces.classes import CLASSES
    from editgan_core.train.true_targets import true_part_changes

    irises = next(c.id for c in CLASSES if c.name == "irises")
    seeds = [s for s in range(40) if abs(faces.sample_attributes(s)["gaze_x"]) < 0.25][:4]
    left = true_part_changes(faces, "gaze_x", -1.0, seeds, 64, len(CLASSES))
    right = true_part_changes(faces, "gaze_x", 1.0, seeds, 64, len(CLASSES))
    assert left.area.shape == (4, len(CLASSES)) and left.place.shape == (4, 2, len(CLASSES))
    drawn = left.present[:, irises]
    moves = left.place[drawn, 0, irises], right.place[drawn, 0, irises]
    assert drawn.any() and (moves[0] <= moves[1] + 1e-6).all() and moves[0].mean() < moves[1].mean() - 0.03
    assert (left.area[:, irises].abs() < 0.002).all()  # the irises move, they barely resize
    attrs = faces.sample_attributes(seeds[0])
    drawn_before = label_geometry(torch.from_numpy(faces.render(attrs, 64).labels), len(CLASSES))[2] >= 4
    drawn_after = label_geometry(torch.from_numpy(faces.render({**attrs, "gaze_x": -1.0}, 64).labels),
                                 len(CLASSES))[2] >= 4
    assert torch.equal(left.present[0], drawn_before & drawn_after) and not left.present[0].all()


def test_references_are_the_face_shifted_by_its_true_change(pipe):
    k = len(pipe.bundle.classes)
    w = pipe.sample_latent(0)
    masks = torch.zeros(1, k, pipe.resolution, pipe.resolution)
    change = _no_change(1, k)
    change.area[0, 1] = 0.05
    change.place[0, 0, 1] = -0.2
    change.present[0, 2] = False
    settings = SideEffectSettings(place_weight=3.0)
    face = _face(pipe, w, torch.zeros(pipe.latent_shape), [1], settings, masks,
                 (change.area[0], change.place[0], change.present[0].float()))
    plain = _face(pipe, w, torch.zeros(pipe.latent_shape), [1], settings, masks,
                  (torch.zeros(k), torch.zeros(2, k), torch.ones(k)))
    assert face.places and len(face.reference) == 3 * k + 3 * k
    shift = (face.reference - plain.reference)[3 * k:].view(3, k)
    assert shift[0, 1] == pytest.approx(0.05) and shift[1, 1] == pytest.approx(-0.2)
    assert shift.abs().sum() == pytest.approx(0.25)
    places = face.scale[4 * k:].view(2, k)
    assert (places[:, 2] == 0).all() and (places[:, 1] == 3.0).all()
    assert torch.allclose(plain.reference, _rows(pipe, plain, w), atol=1e-5)  # nothing to change: the face itself
    sizes_only = _face(pipe, w, torch.zeros(pipe.latent_shape), [1], SideEffectSettings(), masks,
                       (change.area[0], change.place[0], change.present[0].float()))
    assert not sizes_only.places and len(sizes_only.reference) == len(sizes_only.scale) == 3 * k + k
    assert sizes_only.reference[3 * k + 1] == pytest.approx(float(face.reference[3 * k + 1]))
    assert len(_rows(pipe, sizes_only, w)) == 4 * k


def test_the_correction_brings_sizes_and_places_to_their_references(pipe):
    latents = torch.cat([pipe.sample_latent(s) for s in range(3)])
    delta = 0.6 * torch.randn(pipe.latent_shape, generator=torch.Generator().manual_seed(2))
    k, size = len(pipe.bundle.classes), pipe.resolution
    masks = torch.zeros(3, k, size, size)
    changes = _no_change(3, k)
    settings = SideEffectSettings(place_weight=2.0, area_weight=0.5)
    corrected, info = keep_side_effects(pipe, latents, delta, [8, 9], settings, part_masks=masks,
                                        true_changes=changes)
    assert info["side_effects"]["sizes_and_places"] == "true changes"
    assert info["side_effects"]["place_weight"] == 2.0

    def misfit(d):
        total = 0.0
        for i, w in enumerate(latents):
            face = _face(pipe, w[None], delta, [8, 9], settings, masks[i:i + 1],
                         (changes.area[i], changes.place[i], changes.present[i].float()))
            total += float(((_rows(pipe, face, w[None] + d) - face.reference) * face.scale).pow(2).sum())
        return total

    assert misfit(corrected) < 0.5 * misfit(delta)
    plain, _ = keep_side_effects(pipe, latents, delta, [8, 9], settings, part_masks=masks)
    assert not torch.allclose(plain, corrected)


@pytest.mark.parametrize("change, message", [
    (TrueChanges(torch.zeros(1, 4), torch.zeros(1, 2, 4), torch.ones(1, 4, dtype=torch.bool)), "one row per latent"),
    (TrueChanges(torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, 4, dtype=torch.bool)), "one row per latent"),
    (TrueChanges(torch.full((2, 4), float("nan")), torch.zeros(2, 2, 4), torch.ones(2, 4, dtype=torch.bool)),
     "finite"),
])
def test_true_changes_are_checked(pipe, change, message):
    latents = torch.cat([pipe.sample_latent(s) for s in range(2)])
    with pytest.raises(ValueError, match=message):
        keep_side_effects(pipe, latents, torch.zeros(pipe.latent_shape), [8], true_changes=change)


def test_place_weight_is_checked_and_needs_the_renderer(capsys):
    from editgan_core.train import presets

    with pytest.raises(ValueError, match="place_weight"):
        SideEffectSettings(place_weight=-1)
    with pytest.raises(SystemExit):
        presets.main(["--bundle", "no/such/bundle", "--keep-side-effects", "--place-weight", "2"])
    assert "--part-masks renderer" in capsys.readouterr().err


def test_presets_command_holds_sizes_and_places(tiny_bundle, tmp_path):
    from editgan_core.train import presets
    from editgan_core.vectors import load_vector

    common = ["--bundle", str(tiny_bundle), "--device", "cpu", "--only", "look_left", "--faces", "2",
              "--embed-steps", "0", "--method", "pairs", "--cache", str(tmp_path / "cache"),
              "--keep-side-effects", "--part-masks", "renderer"]
    assert presets.main([*common, "--out", str(tmp_path / "colour")]) == 0
    assert presets.main([*common, "--out", str(tmp_path / "place"), "--place-weight", "2"]) == 0
    colour = load_vector(tmp_path / "colour" / "look_left.safetensors")
    place = load_vector(tmp_path / "place" / "look_left.safetensors")
    assert "sizes_and_places" not in colour.extra["side_effects"]
    assert place.extra["side_effects"]["place_weight"] == 2.0
    assert not torch.allclose(colour.delta, place.delta)


def test_a_preset_with_a_place_weight_refuses_the_segmenters_masks(pipe):
    from editgan_core.train.presets import PRESETS, learn_preset

    spec = next(s for s in PRESETS if s.name == "look_left")
    with pytest.raises(ValueError, match="renderer"):
        learn_preset(pipe, pipe.bundle.domain_module(), spec, faces=1, steps=0, embed_steps=0, method="pairs",
                     side_effects=SideEffectSettings(place_weight=1.0), part_masks="segmenter")


def test_the_card_says_sizes_and_places_were_held():
    from editgan_core.model_card import _vector_provenance
    from editgan_core.vectors import EditVector

    kept = {"part_masks": "renderer", "place_weight": 2.0, "sizes_and_places": "true changes"}
    vector = EditVector(delta=torch.zeros(2, 4), name="v", bundle_id="b",
                        extra={"method": "pairs", "seeds": [1, 2], "side_effects": kept})
    said = " ".join(_vector_provenance(vector))
    assert "renderer's exact part maps" in said and "--place-weight 2.0" in said
