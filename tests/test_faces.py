"""The procedural face domain: determinism, local edits, label sanity, palette, sizes."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from editgan_core.domains import faces as F
from editgan_core.domains import get_domain
from editgan_core.domains.faces import classes as parts
from editgan_core.domains.faces import sheets
from editgan_core.domains.faces.attributes import SPECS

cv2.setNumThreads(1)

EXPECTED_NAMES = ["background", "skin", "hair", "eyebrows", "eye_whites", "irises", "pupils", "nose", "lips",
                  "mouth_interior", "ears", "neck", "clothes"]
# A face with every part on show: eyes open, mouth open.
TYPICAL = {"eye_open": 1.0, "mouth_open": 0.7, "gaze_x": 0.0, "gaze_y": 0.0, "pupil_size": 0.5}


def test_classes_ids_names_and_distinct_colours():
    assert [c.id for c in F.CLASSES] == list(range(len(EXPECTED_NAMES)))
    assert [c.name for c in F.CLASSES][: len(EXPECTED_NAMES)] == EXPECTED_NAMES
    assert F.PALETTE.shape == (len(F.CLASSES), 3) and F.PALETTE.dtype == np.uint8
    assert all(tuple(F.PALETTE[c.id]) == c.color for c in F.CLASSES)
    p = F.PALETTE.astype(float)
    dists = [np.linalg.norm(p[i] - p[j]) for i, j in itertools.combinations(range(len(p)), 2)]
    assert min(dists) >= 60


def test_registry_returns_faces_module():
    assert get_domain("faces") is F
    # the domain interface the trainers, benchmarks and bundle tools read (editgan_core/domains/__init__.py)
    for name in ("CLASSES", "PALETTE", "ATTRIBUTE_RANGES", "EDIT_CLASSES", "ATTRIBUTE_SPECS", "sample_attributes",
                 "render", "render_face", "render_batch"):
        assert hasattr(F, name), name
    with pytest.raises(KeyError):
        get_domain("cars")


def test_same_seed_same_pixels_and_different_seeds_differ():
    a, b = F.render_face(11, 64), F.render_face(11, 64)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.attributes == b.attributes == F.sample_attributes(11)
    assert not np.array_equal(a.image, F.render_face(12, 64).image)


def test_render_is_a_pure_function_of_the_attributes():
    attrs = F.sample_attributes(5)
    before = dict(attrs)
    s = F.render(attrs, 64)
    assert attrs == before
    assert np.array_equal(s.image, F.render_face(5, 64).image)
    with pytest.raises(KeyError):
        F.render({**attrs, "moustache": 1.0}, 64)
    with pytest.raises(KeyError):
        F.render({"smile": 1.0}, 64)
    with pytest.raises(KeyError):
        F.render_face(5, 64, moustache=1.0)


def test_sample_attributes_respects_ranges():
    for seed in range(300):
        attrs = F.sample_attributes(seed)
        assert set(attrs) == set(SPECS)
        for name, value in attrs.items():
            spec = SPECS[name]
            assert spec.low <= value <= spec.high, (seed, name, value)
        assert attrs["noise_seed"] == int(attrs["noise_seed"])
    assert set(F.ATTRIBUTE_RANGES) >= {"smile", "mouth_open", "eye_open", "pupil_size", "gaze_x",
                                       "eyebrow_height", "hair_volume", "fringe", "nose_size", "ear_size"}
    assert F.ATTRIBUTE_RANGES["smile"] == (-1.0, 1.0)


def test_out_of_range_overrides_are_clamped():
    assert np.array_equal(F.render_face(3, 64, smile=5.0).image, F.render_face(3, 64, smile=1.0).image)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_any_size_gives_hard_labels(size):
    s = F.render_face(2, size, **TYPICAL)
    assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
    assert s.labels.shape == (size, size) and s.labels.dtype == np.uint8
    assert s.labels.max() < len(F.CLASSES)
    # hard: one id per pixel, every main part present even at 32 px
    present = set(np.unique(s.labels).tolist())
    assert {parts.BACKGROUND, parts.SKIN, parts.HAIR, parts.LIPS, parts.NECK, parts.CLOTHES,
            parts.EYE_WHITES} <= present


def test_labels_agree_across_sizes():
    small = F.render_face(4, 64).labels
    big = F.render_face(4, 128).labels
    # nearest-downsampled 128 px labels match the 64 px labels except along part boundaries
    assert (big[1::2, 1::2] == small).mean() > 0.93


def test_all_classes_appear_and_each_part_is_where_it_belongs():
    seen = set()
    for seed in range(6):
        seen |= set(np.unique(F.render_face(seed, 64).labels).tolist())
    assert seen == set(range(len(F.CLASSES)))

    for seed in range(4):
        lab = F.render_face(seed, 128, **TYPICAL).labels
        counts = np.bincount(lab.ravel(), minlength=len(F.CLASSES))
        assert (counts[: len(EXPECTED_NAMES)] >= 8).all(), (seed, counts)
        rows = {c: np.nonzero(lab == c)[0].mean() for c in range(len(EXPECTED_NAMES))}
        rows[parts.HAIR] = np.nonzero(lab == parts.HAIR)[0].min()  # long hair reaches the shoulders: use its top
        order = [parts.HAIR, parts.EYEBROWS, parts.EYE_WHITES, parts.NOSE, parts.LIPS, parts.NECK, parts.CLOTHES]
        assert all(rows[a] < rows[b] for a, b in itertools.pairwise(order)), (seed, rows)
        assert abs(np.nonzero(lab == parts.SKIN)[1].mean() - 64) < 12  # face roughly centred


def _neighbours(lab: np.ndarray, cls: int) -> set[int]:
    ring = cv2.dilate((lab == cls).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & (lab != cls)
    return set(np.unique(lab[ring]).tolist())


def test_pupil_inside_iris_inside_eye():
    for seed in range(6):
        lab = F.render_face(seed, 128, **TYPICAL).labels
        assert _neighbours(lab, parts.PUPILS) <= {parts.IRISES, parts.SKIN}
        assert _neighbours(lab, parts.IRISES) <= {parts.PUPILS, parts.EYE_WHITES, parts.SKIN}


def test_closed_eyes_and_mouth_hide_their_insides():
    lab = F.render_face(1, 128, eye_open=0.0, mouth_open=0.0).labels
    assert not np.isin(lab, [parts.EYE_WHITES, parts.IRISES, parts.PUPILS, parts.MOUTH_INTERIOR]).any()


def test_labels_match_the_visible_colours():
    s = F.render_face(6, 128, **TYPICAL)
    lum = s.image.astype(float).mean(axis=2)
    assert np.median(lum[s.labels == parts.PUPILS]) < 60
    assert np.median(lum[s.labels == parts.EYE_WHITES]) > 180


@pytest.mark.parametrize("name", sorted(F.EDIT_CLASSES))
def test_one_attribute_changes_only_its_part(name):
    assert set(F.EDIT_CLASSES) == set(F.ATTRIBUTE_RANGES)
    size = 128
    for seed in (0, 3):
        lo, hi = F.ATTRIBUTE_RANGES[name]
        base = {**TYPICAL, "fringe": 0.0} if name != "fringe" else TYPICAL
        a = F.render_face(seed, size, **{**base, name: lo})
        b = F.render_face(seed, size, **{**base, name: hi})
        changed = (a.image != b.image).any(axis=2)
        assert changed.any(), f"{name} had no visible effect for seed {seed}"
        assert (a.labels != b.labels).any()
        region = np.isin(a.labels, F.EDIT_CLASSES[name]) | np.isin(b.labels, F.EDIT_CLASSES[name])
        region = cv2.dilate(region.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        assert not (changed & ~region).any(), f"{name} changed pixels outside its part for seed {seed}"
        assert not ((a.labels != b.labels) & ~region).any()


def test_smile_leaves_everything_above_and_below_the_mouth_identical():
    a, b = F.render_face(8, 128, smile=-1.0), F.render_face(8, 128, smile=1.0)
    rows = np.nonzero((a.labels == parts.LIPS) | (b.labels == parts.LIPS))[0]
    top, bottom = rows.min() - 3, rows.max() + 4
    assert np.array_equal(a.image[:top], b.image[:top]) and np.array_equal(a.image[bottom:], b.image[bottom:])
    assert np.array_equal(a.labels[:top], b.labels[:top])
    assert (a.labels[top:bottom] != b.labels[top:bottom]).sum() > 20


def test_render_batch_shapes():
    images, labels = F.render_batch(range(3), 48)
    assert images.shape == (3, 48, 48, 3) and images.dtype == np.uint8
    assert labels.shape == (3, 48, 48) and labels.dtype == np.uint8
    assert np.array_equal(images[1], F.render_face(1, 48).image)


def test_contact_sheets_are_written(tmp_path, capsys):
    sheets.main(["--grid", str(tmp_path / "grid.png"), "--sweep", str(tmp_path / "sweep.png"), "--size", "32",
                 "--labels"])
    grid, sweep = cv2.imread(str(tmp_path / "grid.png")), cv2.imread(str(tmp_path / "sweep.png"))
    assert grid.shape == (4 * 32, 8 * 2 * 32, 3)
    assert sweep.shape == (len(sheets.SWEEP_ATTRIBUTES) * 32, 8 * 2 * 32, 3)
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        sheets.main([])
