"""Annotating a model in the studio (issue #20): the set, suggestions, training with cross-validation, label
files from disk (grey or colour, checked before any embedding) and the zip archive (round trip, hostile zips)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editgan_core.annotation import archive
from editgan_core.annotation.folder import read_folder
from editgan_core.annotation.labelfiles import LabelFileError, label_ids
from editgan_core.annotation.sources import add_samples
from editgan_core.annotation.store import AnnotationError, AnnotationStore
from editgan_core.annotation.suggest import assign_region, fill_connected, region_purity, suggest
from editgan_core.annotation.training import TrainSettings
from editgan_core.bundle import Bundle
from editgan_core.pipeline import EditGANPipeline
from editgan_core.train import segmenter as train_cli
from webapp.actions.annotate import FILL_MODE, REGION_MODE, TrainOutcome
from webapp.controller import Studio
from webapp.outcomes import Notice, Progress
from webapp.registry import ModelRegistry
from webapp.session import SessionBox

TINY_TRAINING = TrainSettings(members=2, steps=25, pixels=64, folds=2, cv_members=1, cv_steps=10)


@pytest.fixture(scope="module")
def pipe(tiny_bundle) -> EditGANPipeline:
    return EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)


@pytest.fixture
def store(pipe, tmp_path) -> AnnotationStore:
    return AnnotationStore(tmp_path / "annotations", pipe.bundle)


def painted(shape: tuple[int, int], k: int) -> np.ndarray:
    """A full label map as a user would paint it: background, a face, a band of hair, a mouth."""
    h, w = shape
    labels = np.zeros(shape, np.uint8)
    labels[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1
    labels[h // 4: h // 4 + 2 + k % 3, w // 4: 3 * w // 4] = 2
    labels[h // 2 + 3: h // 2 + 5, w // 2 - 3: w // 2 + 3] = 8
    return labels


# -- the studio's logic ------------------------------------------------------------------------------------------
def test_annotate_four_samples_train_and_cross_validate(tiny_bundle_copy):
    studio, box = Studio(ModelRegistry([tiny_bundle_copy], device="cpu"), preview_every_s=0), SessionBox()
    try:
        session = studio.session(box)
        pipe = studio.pipeline(session)
        assert pipe.segmenter is not None
        view = studio.annotate_draw(session, count=4, seed=7)
        assert "0 of 4 done" in view.progress and len(view.gallery) == 4
        # the tiny bundle has a segmenter: its prediction is the starting label map
        assert np.array_equal(studio.annotate_labels(session), pipe.render(pipe.sample_latent(7)).labels)
        size = pipe.resolution
        for k in range(4):
            studio.annotate_set_labels(session, painted((size, size), k))
            before = studio.annotate_labels(session).copy()
            view = studio.annotate_click(session, None, 0, 0, "clothes", REGION_MODE)  # one click names a region
            after = studio.annotate_labels(session)
            clothes = next(c.id for c in pipe.bundle.classes if c.name == "clothes")
            assert (after != before).any() and after[0, 0] == clothes
            studio.annotate_undo(session)
            assert np.array_equal(studio.annotate_labels(session), before)
            studio.annotate_click(session, None, 0, 0, "background", FILL_MODE)
            view = studio.annotate_save(session, None)
            assert f"{k + 1} of 4 done" in view.progress
        items = list(studio.annotate_train(session, TINY_TRAINING))
        assert any(isinstance(i, Progress) for i in items)
        outcome = items[-1]
        assert isinstance(outcome, TrainOutcome), items[-3:]
        table = {row[0]: row for row in outcome.table}
        assert isinstance(table["skin"][1], float) and 0.0 <= table["skin"][1] <= 1.0
        assert table["eyebrows"][1] == "not labelled" and table["skin"][2] > 0
        assert "Cross-validated mIoU" in outcome.status
        manifest = Bundle.load(tiny_bundle_copy).manifest["segmenter"]
        assert manifest["annotations"] == 4 and manifest["members"] == TINY_TRAINING.members
        assert pipe.segmenter.num_classes == len(pipe.bundle.classes) and len(pipe.segmenter.members) == 2
    finally:
        box.close()


def test_cancelled_training_leaves_the_segmenter(tiny_bundle_copy):
    studio, box = Studio(ModelRegistry([tiny_bundle_copy], device="cpu"), preview_every_s=0), SessionBox()
    try:
        session = studio.session(box)
        seg = tiny_bundle_copy / "segmenter.safetensors"
        before = seg.read_bytes()
        studio.annotate_draw(session, count=2, seed=1)
        for _ in range(2):
            studio.annotate_save(session, None)
        items = studio.annotate_train(session, TINY_TRAINING)
        next(i for i in items if isinstance(i, Progress))
        session.cancel()
        rest = list(items)
        assert isinstance(rest[-1], Notice) and "not changed" in rest[-1].text
        assert seg.read_bytes() == before
    finally:
        box.close()


# -- the store and suggestions -----------------------------------------------------------------------------------
def test_store_progress_and_resume(store, pipe):
    entries = add_samples(store, pipe, 3, seed=5)
    assert [e.name for e in entries] == ["001-seed5", "002-seed6", "003-seed7"]
    store.save_labels(entries[1].name, painted((pipe.resolution,) * 2, 0))
    again = AnnotationStore(store.folder, pipe.bundle)  # a restart: the folder is the state
    assert str(again.progress()) == "1 of 3 done"
    assert np.array_equal(again.labels("002-seed6"), painted((pipe.resolution,) * 2, 0))
    preview = np.asarray(Image.open(store.folder / "002-seed6.preview.png").convert("RGB"))
    assert np.array_equal(preview, pipe.bundle.palette[painted((pipe.resolution,) * 2, 0)])
    with pytest.raises(AnnotationError, match="class ids"):
        store.save_labels("001-seed5", np.full((pipe.resolution,) * 2, 99))
    with pytest.raises(AnnotationError, match="not an annotation"):
        store.labels("../manifest")


def test_suggestions_regions_and_tools(pipe):
    found = suggest(pipe, pipe.sample_latent(3), regions=6)
    assert found.regions.shape == (pipe.resolution,) * 2 and 2 <= found.regions.max() + 1 <= 6
    assert found.labels is not None and found.source == "segmentation branch"
    labels = np.zeros((4, 4), np.uint8)
    regions = np.array([[0, 0, 1, 1]] * 4)
    assert assign_region(labels, regions, 0, 3, 5)[:, 2:].tolist() == [[5, 5]] * 4
    labels[:, 1] = 2  # a wall: the fill stops at it
    filled = fill_connected(labels, 0, 0, 7)
    assert filled[:, 0].tolist() == [7] * 4 and filled[:, 3].tolist() == [0] * 4
    truth = np.array([[0, 0, 1, 1]] * 4)
    assert region_purity(np.array([[0, 0, 0, 1]] * 4), truth) == 0.75


# -- label files from disk ---------------------------------------------------------------------------------------
def write_pair(folder: Path, name: str, image: np.ndarray, labels: Image.Image) -> None:
    Image.fromarray(image).save(folder / f"{name}.png")
    labels.save(folder / f"{name}.labels.png")


def test_grey_and_colour_label_files_accepted(pipe, tmp_path):
    size = pipe.resolution
    image = pipe.render(pipe.sample_latent(1), with_labels=False).image
    ids = painted((size, size), 1)
    write_pair(tmp_path, "grey", image, Image.fromarray(ids, "L"))
    write_pair(tmp_path, "colour", image, Image.fromarray(pipe.bundle.palette[ids]))
    read = {a.name: a for a in read_folder(tmp_path, pipe.bundle)}
    assert read["grey"].kind == "grey ids" and read["colour"].kind == "colours"
    assert np.array_equal(read["grey"].labels, ids) and np.array_equal(read["colour"].labels, ids)
    near = pipe.bundle.palette[ids].astype(np.int16) + 6  # light compression noise still snaps
    assert np.array_equal(label_ids(Image.fromarray(near.clip(0, 255).astype(np.uint8)), pipe.bundle.palette).ids,
                          ids)


def test_bad_label_files_named_before_any_embedding(tiny_bundle_copy, tmp_path, monkeypatch, capsys):
    bundle = Bundle.load(tiny_bundle_copy)
    size = bundle.resolution
    image = np.full((size, size, 3), 128, np.uint8)
    ids = painted((size, size), 0)
    write_pair(tmp_path, "good", image, Image.fromarray(bundle.palette[ids]))
    off = bundle.palette[ids].copy()
    off[:3, :3] = (1, 254, 3)  # a colour that is no class
    write_pair(tmp_path, "offpalette", image, Image.fromarray(off))
    write_pair(tmp_path, "small", image, Image.fromarray(ids[: size // 2, : size // 2], "L"))

    def no_embedding(*args, **kwargs):
        raise AssertionError("an annotation was embedded before the files were checked")

    monkeypatch.setattr(EditGANPipeline, "embed", no_embedding)
    with pytest.raises(SystemExit):
        train_cli.main(["--bundle", str(tiny_bundle_copy), "--annotations", str(tmp_path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert "offpalette.labels.png" in err and "(1, 254, 3) at 9 pixel(s)" in err
    assert "small.labels.png" in err and "same size" in err and "good.labels.png" not in err
    with pytest.raises(LabelFileError, match="grey value 40"):
        label_ids(Image.fromarray(np.full((4, 4), 40, np.uint8), "L"), bundle.palette)


def test_cli_trains_from_the_studio_folder_without_embedding(tiny_bundle_copy, tmp_path, monkeypatch):
    bundle = Bundle.load(tiny_bundle_copy)
    pipe = EditGANPipeline.from_pretrained(tiny_bundle_copy, device="cpu", lpips=False)
    store = AnnotationStore(tmp_path / "set", bundle)
    for k, entry in enumerate(add_samples(store, pipe, 2, seed=3)):
        store.save_labels(entry.name, painted((bundle.resolution,) * 2, k))
    monkeypatch.setattr(EditGANPipeline, "embed", lambda *a, **k: pytest.fail("samples need no embedding"))
    train_cli.main(["--bundle", str(tiny_bundle_copy), "--annotations", str(store.folder), "--device", "cpu",
                    "--members", "1", "--steps", "5", "--pixels", "32"])
    assert Bundle.load(tiny_bundle_copy).manifest["segmenter"]["annotations"] == 2


# -- zip archive -------------------------------------------------------------------------------------------------
def test_zip_round_trip(store, pipe, tmp_path):
    entries = add_samples(store, pipe, 2, seed=11)
    store.save_labels(entries[0].name, painted((pipe.resolution,) * 2, 2))
    path = archive.export_zip(store, tmp_path / "set.zip")
    other = AnnotationStore(tmp_path / "other", pipe.bundle)
    added = archive.import_zip(other, path)
    assert [e.done for e in added] == [True, False] and str(other.progress()) == "1 of 2 done"
    assert np.array_equal(other.labels(added[0].name), store.labels(entries[0].name))
    assert np.array_equal(other.image(added[1].name), store.image(entries[1].name))
    assert (other.latent(added[1].name) == store.latent(entries[1].name)).all()


def hostile(tmp_path: Path, members: dict[str, bytes], name: str = "bad.zip") -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("case, message", [
    ("traversal", "no file of an annotation set"),
    ("bomb", "zip bomb"),
    ("wrong_size", "this model's are"),
    ("bad_class", "class id"),
    ("no_latent", "lacks its latent"),
    ("classes", "use the classes"),
])
def test_hostile_zip_refused_and_nothing_written(store, pipe, tmp_path, case, message):
    entries = add_samples(store, pipe, 1, seed=2)
    good = archive.export_zip(store, tmp_path / "good.zip")
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    name, size = entries[0].name, pipe.resolution
    if case == "traversal":
        members["annotations/../../evil.png"] = members[f"annotations/{name}.png"]
    elif case == "bomb":
        members[f"annotations/{name}.labels.png"] = b"\0" * (8 * 2**20)
    elif case == "wrong_size":
        members[f"annotations/{name}.png"] = png(np.zeros((size + 1, size + 1, 3), np.uint8))
    elif case == "bad_class":
        members[f"annotations/{name}.labels.png"] = png(np.full((size, size), 200, np.uint8))
    elif case == "no_latent":
        del members[f"annotations/{name}.latent.safetensors"]
    else:
        members["annotation-set.json"] = json.dumps({"classes": ["sky", "road"]}).encode()
    target = AnnotationStore(tmp_path / "target", pipe.bundle)
    with pytest.raises(AnnotationError, match=message):
        archive.import_zip(target, hostile(tmp_path, members))
    assert target.names() == [] and not (tmp_path / "evil.png").exists()
