"""Presets for any bundle: painted edits kept as (latent, labels) pairs, learnt into one shared vector."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from editgan_core.bundle import MANIFEST
from editgan_core.pipeline import EditGANPipeline
from editgan_core.preset_pairs import PairError, add_pair, list_presets, load_pairs, pairs_root, preset_folder
from editgan_core.train import presets
from editgan_core.train.preset_pairs import SOURCE, learn_preset_from_pairs, save_preset_vector
from editgan_core.vectors import EditVector, open_library
from webapp.thumbnails import ThumbnailCache


@pytest.fixture
def no_domain_bundle(tiny_bundle_copy):
    """The tiny bundle as an imported model: a segmenter, but no procedural domain to script presets on."""
    manifest = json.loads((tiny_bundle_copy / MANIFEST).read_text())
    del manifest["domain"]
    (tiny_bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    return tiny_bundle_copy


def painted(pipe: EditGANPipeline, seed: int):
    """A latent and its segmentation with a square painted in the next class: what a user paints."""
    latent = pipe.sample_latent(seed)
    labels = pipe.render(latent).labels.copy()
    labels[10:18, 12:20] = (labels[10:18, 12:20] + 1) % 4
    return latent, labels


def add_pairs(pipe: EditGANPipeline, name: str, seeds) -> None:
    for seed in seeds:
        add_pair(pipe.bundle, name, *painted(pipe, seed), source={"seed": seed})


def test_pairs_are_stored_numbered_and_read_back(no_domain_bundle, editgan_home) -> None:
    pipe = EditGANPipeline.from_pretrained(no_domain_bundle, device="cpu", lpips=False)
    add_pairs(pipe, "Wide grin", [1, 2])
    folder = preset_folder(pipe.bundle, "Wide grin")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "000.labels.png", "000.latent.safetensors", "001.labels.png", "001.latent.safetensors"]
    assert pairs_root(pipe.bundle) == editgan_home / "preset_pairs" / "tiny-test"  # EDITGAN_HOME wins
    assert list_presets(pipe.bundle) == {"Wide grin": 2}
    pairs = load_pairs(pipe.bundle, "wide grin", pipe.latent_shape, pipe.resolution)
    latent, labels = painted(pipe, 2)
    assert [p.name for p in pairs] == ["000", "001"]
    assert np.array_equal(pairs[1].labels, labels) and np.allclose(pairs[1].latent, latent)
    add_pair(pipe.bundle, "../escape", latent, labels)  # cleaned like a vector name: stays inside the root
    assert (pairs_root(pipe.bundle) / "escape" / "000.latent.safetensors").is_file()
    with pytest.raises(PairError, match="not usable as a vector name"):
        add_pair(pipe.bundle, " / ", latent, labels)


def test_a_preset_is_learnt_from_pairs_on_a_bundle_without_a_domain(no_domain_bundle) -> None:
    assert presets.main(["--bundle", str(no_domain_bundle), "--from-pairs", "--device", "cpu"]) == 2  # no pairs yet
    pipe = EditGANPipeline.from_pretrained(no_domain_bundle, device="cpu", lpips=False)
    add_pairs(pipe, "square", range(3))
    args = ["--bundle", str(no_domain_bundle), "--from-pairs", "--preset", "square", "--steps", "3",
            "--default-scale", "0.8", "--device", "cpu"]
    assert presets.main(args) == 0
    library = open_library(pipe.bundle.id, pipe.latent_shape, pipe.bundle.vectors_dir)
    vec = library.get("square")
    assert vec.source == SOURCE and vec.default_scale == 0.8 and vec.extra["pairs"] == ["000", "001", "002"]
    assert vec.delta.abs().sum() > 0 and vec.class_ids
    thumb, = ThumbnailCache().get_many(pipe, [vec], lambda latents: [pipe.render(w).image for w in latents])
    assert thumb.ndim == 3 and thumb.shape[2] == 3
    assert presets.main(args) == 0  # learning again replaces the earlier vector learnt from pairs
    assert [v.name for v in library.list()].count("square") == 1
    auto = [*args[: args.index("--default-scale")], "--keep-side-effects", "--device", "cpu"]
    assert presets.main(auto) == 0  # no scale given: the one that best redraws the paintings, then corrected
    vec = library.get("square")
    assert f"{vec.default_scale:g}" in vec.extra["strength_iou"]
    assert vec.extra["strength_iou"][f"{vec.default_scale:g}"] == max(vec.extra["strength_iou"].values())
    assert vec.extra["side_effects"]["faces"] == 3


def test_refusals_name_the_problem(no_domain_bundle, other_tiny_bundle) -> None:
    pipe = EditGANPipeline.from_pretrained(no_domain_bundle, device="cpu", lpips=False)
    with pytest.raises(PairError, match="no pairs yet"):
        learn_preset_from_pairs(pipe, "nothing", steps=1)
    add_pairs(pipe, "few", [1, 2])
    with pytest.raises(PairError, match=r"2 usable pair.*at least 3"):
        learn_preset_from_pairs(pipe, "few", steps=1)
    latent = pipe.sample_latent(4)
    add_pair(pipe.bundle, "unchanged", latent, pipe.render(latent).labels)
    with pytest.raises(PairError, match="already matches the painting"):
        learn_preset_from_pairs(pipe, "unchanged", steps=1, min_pairs=1)

    other = EditGANPipeline.from_pretrained(other_tiny_bundle, device="cpu", lpips=False)
    add_pair(other.bundle, "foreign", *painted(other, 1))
    mine = preset_folder(pipe.bundle, "few")
    for path in preset_folder(other.bundle, "foreign").glob("000.*"):
        shutil.copy(path, mine / path.name.replace("000", "002"))
    with pytest.raises(PairError, match=r"1 pair\(s\) this model cannot use.*'tiny-other'"):
        learn_preset_from_pairs(pipe, "few", steps=1)

    add_pairs(pipe, "smile", range(3))  # the name of a preset shipped with the model
    result = learn_preset_from_pairs(pipe, "smile", steps=1)
    with pytest.raises(PairError, match="preset shipped with the model"):
        save_preset_vector(pipe, result.vector)
    library = open_library(pipe.bundle.id, pipe.latent_shape, pipe.bundle.vectors_dir)
    library.save(EditVector(delta=result.vector.delta, name="mine", bundle_id=pipe.bundle.id))
    add_pairs(pipe, "mine", range(3))
    with pytest.raises(PairError, match="vector saved otherwise"):
        save_preset_vector(pipe, learn_preset_from_pairs(pipe, "mine", steps=1).vector)
