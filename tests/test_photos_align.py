"""Alignment to a bundle's framing and paste-back at the photo's resolution (issue #21 items 1 and 2)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from editgan_core.bundle import Bundle, BundleError
from editgan_core.domains.faces import framing_entry, landmarks, render_face
from editgan_core.losses import image_psnr
from editgan_core.photos.align import Alignment, AlignmentError, align_box, align_points, crop, fit_similarity
from editgan_core.photos.framing import Framing, FramingError, parse_framing
from editgan_core.photos.pasteback import changed_pixels, feathered_weight, paste_back
from editgan_core.photos.synthetic import make_composite
from editgan_core.photos.workflow import align_photo
from editgan_core.pipeline import EditGANPipeline, InputError
from editgan_core.vectors import load_vector

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "faces64"
FRAMING = parse_framing(framing_entry(), 64)


@pytest.fixture(scope="module")
def demo() -> EditGANPipeline:
    return EditGANPipeline.from_pretrained(DEMO, device="cpu", lpips=False)


def test_similarity_fit_recovers_a_known_transform():
    a, b = 0.3 * complex(math.cos(0.4), math.sin(0.4)), complex(-12.5, 40.25)
    src = [(10.0, 20.0), (200.0, 35.0), (90.0, 310.0)]
    dst = [(a * complex(*p) + b).real for p in src], [(a * complex(*p) + b).imag for p in src]
    fa, fb = fit_similarity(src, list(zip(*dst, strict=True)))
    assert abs(fa - a) < 1e-12 and abs(fb - b) < 1e-9
    al = Alignment(a, b, 64, (400, 400))
    assert np.allclose(al.to_photo(al.to_crop(src)), src)
    assert al.scale == pytest.approx(1 / 0.3) and al.angle == pytest.approx(-math.degrees(0.4))


def test_the_demo_framing_is_where_its_renders_put_eyes_and_mouth():
    face = render_face(7, 64, pos_x=0, pos_y=0, scale=0, tilt=0, eye_spacing=0.5, smile=0)
    marks = landmarks(face.attributes, 64)
    for name in marks:
        assert np.allclose(marks[name], FRAMING.target(name), atol=1e-6)
    pupils = np.argwhere(face.labels == 6)  # the pupils (gaze varies) lie around the eye landmarks
    left = pupils[pupils[:, 1] < 32].mean(axis=0)[::-1] + 0.5
    assert np.hypot(*(left - marks["left_eye"])) < 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_points_crop_matches_the_render(seed):
    """The in-the-wild composite aligned from the true landmarks gives back the render (>= 30 dB)."""
    comp = make_composite(seed)
    assert comp.photo.shape == (768, 1024, 3)
    aligned = align_photo(comp.photo, FRAMING, points=comp.landmarks)
    assert aligned.how == "points" and aligned.crop.shape == (64, 64, 3)
    assert image_psnr(aligned.crop, comp.face.image) >= 30
    centre = align_photo(comp.photo, FRAMING)  # what the studio did before: the centre square
    assert image_psnr(centre.crop, comp.face.image) < 20


def test_large_faces_are_shrunk_before_sampling():
    comp = make_composite(4, photo_size=(2400, 1800), face_side=(1000, 1100), max_angle=20)
    aligned = align_points(comp.landmarks, FRAMING, (2400, 1800))
    assert aligned.scale > 15
    assert image_psnr(crop(comp.photo, aligned), comp.face.image) >= 30


def test_ffhq_recipe_and_box():
    ffhq = parse_framing({"kind": "landmarks", "fit": "ffhq"}, 256)
    points = {"left_eye": (100.0, 100.0), "right_eye": (160.0, 100.0), "mouth": (130.0, 160.0)}
    al = align_points(points, ffhq, (400, 300))
    # eye distance 60 x 2 is the half-side; the centre lies a tenth of the way from the eyes to the mouth
    assert al.scale == pytest.approx(240 / 256) and al.angle == pytest.approx(0, abs=1e-9)
    assert np.allclose(al.to_crop([(130.0, 106.0)]), [(128, 128)])
    turned = {k: (300 - y, x) for k, (x, y) in points.items()}  # the face turned a quarter clockwise on screen
    assert align_points(turned, ffhq, (400, 400)).angle == pytest.approx(90)  # turned back counter-clockwise
    box = align_box((50, 60, 250, 160), Framing("box", 64, margin=0.1), (400, 300))
    assert np.allclose(box.to_crop([(150.0, 110.0)]), [(32, 32)]) and box.scale == pytest.approx(240 / 64)


def test_bad_points_boxes_and_framings_are_refused_clearly():
    good = {"left_eye": (10.0, 10.0), "right_eye": (30.0, 10.0), "mouth": (20.0, 30.0)}
    with pytest.raises(AlignmentError, match="missing"):
        align_points({"left_eye": (1, 1)}, FRAMING, (50, 50))
    with pytest.raises(AlignmentError, match="same place"):
        align_points({**good, "right_eye": (10.5, 10.0)}, FRAMING, (50, 50))
    with pytest.raises(AlignmentError, match="below"):
        align_points({**good, "mouth": (40.0, 11.0)}, FRAMING, (50, 50))
    swapped = {**good, "left_eye": good["right_eye"], "right_eye": good["left_eye"]}
    assert align_points(swapped, FRAMING, (50, 50)) == align_points(good, FRAMING, (50, 50))
    with pytest.raises(AlignmentError, match="outside"):
        align_points({**good, "mouth": (20.0, 1e6)}, FRAMING, (50, 50))
    with pytest.raises(AlignmentError, match="box"):
        align_points(good, Framing("box", 64), (50, 50))
    with pytest.raises(AlignmentError, match="too small"):
        align_box((5, 5, 6, 7), FRAMING, (50, 50))
    for entry, message in [({"kind": "oval"}, "kind"), ({"kind": "landmarks"}, "points"),
                           ({**framing_entry(), "padding": "wrap"}, "padding"),
                           ({**framing_entry(), "points": {"left_eye": [0.4, 0.5]}}, "exactly")]:
        with pytest.raises(FramingError, match=message):
            parse_framing(entry, 64)


def test_a_bundle_with_a_bad_framing_does_not_open(tmp_path):
    root = Path(shutil.copytree(DEMO, tmp_path / "b", ignore=shutil.ignore_patterns("*.safetensors", "vectors")))
    manifest = json.loads((root / "manifest.json").read_text())
    assert Bundle.load(root).framing == FRAMING and Bundle.load(root).background == (142, 142, 142)
    (root / "manifest.json").write_text(json.dumps({**manifest, "framing": {"kind": "landmarks", "fit": "x"}}))
    with pytest.raises(BundleError, match="fit"):
        Bundle.load(root)
    (root / "manifest.json").write_text(json.dumps({**manifest, "background": [0, 0]}))
    with pytest.raises(BundleError, match="background"):
        Bundle.load(root)


def test_paste_back_touches_only_the_feathered_edit_region():
    comp = make_composite(5)
    aligned = align_photo(comp.photo, FRAMING, points=comp.landmarks)
    before = aligned.crop
    after = before.copy()
    after[40:46, 24:40] = (255, 0, 255)  # an "edit" across the mouth
    changed = changed_pixels(before, after)
    assert changed.sum() == 6 * 16
    weight = feathered_weight(changed)
    assert weight[42, 30] == weight[39, 30] == 1 and weight[30, 30] == 0 and 0 < weight[38, 30] < 1
    result = paste_back(comp.photo, aligned.alignment, after, weight)
    assert result.image.shape == comp.photo.shape
    untouched = ~result.changed
    assert np.array_equal(result.image[untouched], comp.photo[untouched])
    mouth = np.rint(comp.landmarks["mouth"]).astype(int)
    assert result.image[mouth[1], mouth[0], 1] < 60  # magenta now where the mouth was
    # the touched pixels lie within the grown region, mapped into the photo
    ys, xs = np.nonzero(result.changed)
    inside = aligned.alignment.to_crop(np.stack([xs + 0.5, ys + 0.5], axis=1))
    assert inside[:, 0].min() > 24 - 4 and inside[:, 0].max() < 40 + 4
    assert inside[:, 1].min() > 40 - 4 and inside[:, 1].max() < 46 + 4
    speck = before.copy()
    speck[5, 5] = 0
    assert not changed_pixels(before, speck).any()  # a lone pixel is flicker, not an edit


def test_paste_back_into_a_photo_smaller_than_the_crop():
    comp = make_composite(6, photo_size=(160, 120), face_side=(40, 50), max_angle=10)
    aligned = align_photo(comp.photo, FRAMING, points=comp.landmarks)
    assert aligned.alignment.scale < 1
    after = aligned.crop.copy()
    after[20:44, 20:44] = 0
    result = paste_back(comp.photo, aligned.alignment, after, feathered_weight(changed_pixels(aligned.crop, after)))
    assert result.changed.any() and np.array_equal(result.image[~result.changed], comp.photo[~result.changed])


def test_align_embed_preset_paste_back_on_the_demo(demo):
    """The full round trip on a 1024x768 photo: only the edit region differs from the input, and it does."""
    comp = make_composite(3)
    aligned = demo.align(comp.photo, points=comp.landmarks)
    embedded = demo.embed(aligned.crop, steps=0)
    smile = load_vector(demo.bundle.vectors_dir / "smile.safetensors")
    after = demo.render(demo.apply(embedded.latent, [(smile, 1.0)]))
    result = demo.paste_back(aligned, embedded.render, after)
    assert result.image.shape == (768, 1024, 3)
    outside = ~result.changed
    assert np.array_equal(result.image[outside], comp.photo[outside])
    quad_area = (aligned.alignment.scale * 64) ** 2
    assert 0 < result.changed.sum() < 0.25 * quad_area  # the edit region, not the whole crop
    mouth = np.rint(comp.landmarks["mouth"]).astype(int)
    face = (slice(mouth[1] - 15, mouth[1] + 15), slice(mouth[0] - 15, mouth[0] + 15))
    assert np.abs(result.image[face].astype(int) - comp.photo[face]).mean() > 2
    with pytest.raises(InputError, match="mouth"):
        demo.align(comp.photo, points={**comp.landmarks, "mouth": comp.landmarks["right_eye"]})
