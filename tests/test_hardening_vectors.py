"""Hostile or oversized vector files and values: refused with a message naming the limit, skipped at start-up,
and never stored half-way (a refused save or import leaves the library and the session working)."""

from __future__ import annotations

import json
import logging
import struct
from types import SimpleNamespace

import numpy as np
import pytest
import safetensors.torch
import torch

from editgan_core.pipeline import InputError
from editgan_core.vectors import FORMAT, EditVector, VectorError, open_library, save_vector, vector_from_bytes
from editgan_core.vectors.vector import MAX_DESCRIPTION_CHARS
from webapp.controller import Studio
from webapp.registry import ModelRegistry
from webapp.session import SessionBox, close_box
from webapp.thumbnails import OUT_OF_RANGE_GREY


@pytest.fixture
def studio(tiny_bundle_copy) -> Studio:
    return Studio(ModelRegistry([tiny_bundle_copy], device="cpu"), preview_every_s=0)


@pytest.fixture
def box():
    b = SessionBox()
    yield b
    close_box(b)


def _file_bytes(shape, bundle_id: str, meta: dict | None = None, editgan: str | None = None,
                values: float = 0.1) -> bytes:
    info = {"name": "hostile", "bundle_id": bundle_id, **(meta or {})}
    return safetensors.torch.save({"delta": torch.full(shape, values)},
                                  metadata={"format": FORMAT, "editgan": editgan or json.dumps(info)})


def _deep(levels: int) -> str:
    return json.dumps({"name": "deep", "bundle_id": "x", "extra": {"a": 1}})[:-1].replace(
        '"a": 1', '"a": ' + "[" * levels + "]" * levels)


def test_deeply_nested_metadata_is_refused_not_a_recursion_error():
    for levels in (20, 30_000):
        data = _file_bytes((4, 8), "x", editgan=_deep(levels) + "}")
        with pytest.raises(VectorError, match="nested deeper than 8 levels"):
            vector_from_bytes(data)
    header = b'{"delta": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(VectorError, match="nested too deeply"):
        vector_from_bytes(struct.pack("<Q", len(header)) + header)


def test_one_bad_file_in_a_bundles_vectors_folder_is_skipped_at_start_up(tiny_bundle_copy, caplog):
    bundle_id = json.loads((tiny_bundle_copy / "manifest.json").read_text())["id"]
    presets = next(p.parent for p in tiny_bundle_copy.rglob("*.safetensors") if p.parent.name == "vectors")
    (presets / "deep.safetensors").write_bytes(_file_bytes((4, 8), bundle_id, editgan=_deep(30_000) + "}"))
    (presets / "garbage.safetensors").write_bytes(b"\x00" * 100)
    with caplog.at_level(logging.WARNING):
        registry = ModelRegistry([tiny_bundle_copy], device="cpu")
        init, _, names = Studio(registry).initial_page()  # what build_demo does at start-up
    assert init.image is not None and names and "deep" not in names and "hostile" not in names
    assert "deep.safetensors" in caplog.text and "garbage.safetensors" in caplog.text


def test_a_long_description_is_refused_naming_the_limit_and_the_name_stays_free(studio, box):
    session = studio.session(box)
    shape = studio.pipeline(session).latent_shape
    session.last_edit = SimpleNamespace(delta=torch.full(shape, 0.05), class_ids=[1], metrics={"loss": 0.1})
    for size in (MAX_DESCRIPTION_CHARS + 1, 2 * 1024 * 1024):
        with pytest.raises(VectorError, match=f"the description has {size} characters; the limit is 2000"):
            studio.save_vector(session, "wordy", "d" * size)
    with pytest.raises(VectorError, match="the vector name has 5000 characters"):
        studio.save_vector(session, "n" * 5000, "")
    saved = studio.save_vector(session, "wordy", "d" * MAX_DESCRIPTION_CHARS)
    assert saved.name in studio.gallery(session)[1]


def test_metadata_that_could_not_be_read_back_is_never_written(tmp_path):
    vec = EditVector(delta=torch.zeros(4, 8), name="big", bundle_id="x", extra={"notes": ["n" * 1000] * 100})
    with pytest.raises(VectorError, match=r"its metadata takes 9[0-9] KB; the limit is 64 KB"):
        save_vector(vec, tmp_path / "big.safetensors")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("values", "scale", "message"), [
    (3e38, 1.0, r"holds values up to 3e\+38; .*\(limit 10000\)"),
    (1e3, 1.0, "times as far as this model's faces differ from each other; the limit is 25"),
    (0.05, 1e6, r"default strength 1e\+06 is beyond the limit of ±100"),
    (0.3, 99.0, r"at strength 99\).*limit is 25"),
])
def test_out_of_proportion_imports_are_refused_and_the_session_keeps_working(studio, box, tmp_path, values, scale,
                                                                             message):
    session = studio.session(box)
    pipe = studio.pipeline(session)
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(_file_bytes(pipe.latent_shape, pipe.bundle.id, {"default_scale": scale}, values=values))
    before = studio.gallery(session)[1]
    with pytest.raises((VectorError, InputError), match=message):
        studio.import_vector(session, path)
    assert studio.gallery(session)[1] == before  # nothing stored
    good = tmp_path / "fine.safetensors"
    good.write_bytes(_file_bytes(pipe.latent_shape, pipe.bundle.id, {"name": "fine"}, values=0.5 * pipe.latent_spread))
    assert studio.import_vector(session, good).name == "fine"
    studio.add_vector(session, "fine")
    with pytest.raises(InputError, match="lower the strength"):
        studio.set_strengths(session, [100.0])


def test_a_vector_out_of_range_in_the_folder_shows_a_grey_tile_not_a_failure(studio, box):
    session = studio.session(box)
    pipe = studio.pipeline(session)
    save_vector(EditVector(delta=torch.full(pipe.latent_shape, 0.5), name="loud", bundle_id=pipe.bundle.id,
                           default_scale=90.0), session.library.root / "loud.safetensors")
    items, names = studio.gallery(session)
    tile = items[names.index("loud")][0]
    assert (tile == OUT_OF_RANGE_GREY).all() and not (items[0][0] == OUT_OF_RANGE_GREY).all()


def test_leftovers_of_interrupted_saves_are_removed_when_the_library_opens(tmp_path):
    lib = open_library("x", (4, 8))
    lib.save(EditVector(delta=torch.zeros(4, 8), name="kept", bundle_id="x"))
    leftover = lib.root / ".kept.safetensors.abc123.tmp"
    leftover.write_bytes(b"half a vector")
    assert open_library("x", (4, 8)).list()[0].name == "kept" and not leftover.exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "many", None, 1e12])
def test_numbers_from_the_page_or_the_api_are_checked(studio, box, bad):
    session = studio.session(box)
    with pytest.raises(InputError, match="must be"):
        studio.sample(session, bad)
    with pytest.raises(InputError, match="the truncation must be"):
        studio.sample(session, 1, bad)
    with pytest.raises(InputError, match="the overlay opacity must be"):
        studio.view(session, bad)
    if bad is not None:  # None: the model's default number of steps
        with pytest.raises(InputError, match="the number of edit steps must be"):
            list(studio.edit(session, np.zeros((64, 64, 3), np.uint8), bad))
