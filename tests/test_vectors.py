"""Editing-vector files, the per-bundle library, .npy import, name safety and W+ arithmetic."""

from __future__ import annotations

import json
import struct
import threading
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from editgan_core import vectors
from editgan_core.vectors import (
    EditVector,
    VectorError,
    VectorLibrary,
    VectorNotFoundError,
    compose,
    import_npy,
    load_vector,
    sanitize_name,
    save_vector,
    vector_from_bytes,
    vector_to_bytes,
)

BUNDLE = "faces64-demo"
SHAPE = (10, 128)


def make_vec(name: str = "smile", seed: int = 0, created: str = "2024-05-01T12:00:00+00:00", **kw) -> EditVector:
    gen = torch.Generator().manual_seed(seed)
    shape = kw.pop("shape", SHAPE)
    kw.setdefault("bundle_id", BUNDLE)
    return EditVector(delta=torch.randn(shape, generator=gen), name=name, created=created, **kw)


def write_raw(path: Path, delta: torch.Tensor, meta: dict | None) -> Path:
    path.write_bytes(safetensors.torch.save({"delta": delta}, metadata=meta))
    return path


def good_meta(**info) -> dict[str, str]:
    base = {"name": "smile", "bundle_id": BUNDLE}
    base.update(info)
    return {"format": vectors.FORMAT, "editgan": json.dumps(base)}


def files(folder: Path) -> list[str]:
    """A library folder's files, less its lock file."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock")


@pytest.fixture
def lib(tmp_path: Path) -> VectorLibrary:
    presets = tmp_path / "bundle" / "vectors"
    presets.mkdir(parents=True)
    save_vector(make_vec("Open mouth", seed=10, source="preset"), presets / "open_mouth.safetensors")
    save_vector(make_vec("Arched brows", seed=11, source="preset"), presets / "brows.safetensors")
    return VectorLibrary(tmp_path / "user", BUNDLE, SHAPE, read_only_roots=[presets])


# ----------------------------------------------------------------------------------------------- format


def test_round_trip_keeps_every_field_bit_exactly(tmp_path: Path) -> None:
    vec = make_vec(
        "smile wide",
        description="corners of the mouth up",
        class_ids=[3, 7],
        default_scale=0.75,
        source="learned",
        extra={"steps": 30, "loss": torch.tensor(0.125), "np": np.float32(2.5), "nested": {"a": [1, 2]}},
    )
    vec.delta[0, 0] = float.fromhex("0x1.fffffep-126")  # a value a lossy path would round
    path = save_vector(vec, tmp_path / "v.safetensors")
    back = load_vector(path, expect_bundle_id=BUNDLE, expect_shape=SHAPE)
    assert torch.equal(back.delta, vec.delta) and back.delta.dtype == torch.float32
    assert back.delta.view(torch.int32).equal(vec.delta.view(torch.int32))
    for f in ("name", "description", "bundle_id", "class_ids", "default_scale", "created", "source"):
        assert getattr(back, f) == getattr(vec, f), f
    assert back.extra == {"steps": 30, "loss": 0.125, "np": 2.5, "nested": {"a": [1, 2]}}
    assert back.latent_shape == SHAPE
    assert vector_from_bytes(vector_to_bytes(vec)).delta.equal(vec.delta)


def test_file_layout_is_documented_keys(tmp_path: Path) -> None:
    path = save_vector(make_vec(), tmp_path / "v.safetensors")
    with safetensors.safe_open(str(path), "pt") as f:
        assert list(f.keys()) == ["delta"]
        meta = f.metadata()
    assert meta["format"] == "editgan-vector/1"
    info = json.loads(meta["editgan"])
    assert info["name"] == "smile" and info["bundle_id"] == BUNDLE and info["latent_shape"] == list(SHAPE)


def test_default_created_is_utc_iso(tmp_path: Path) -> None:
    vec = EditVector(delta=torch.zeros(SHAPE), name="x", bundle_id=BUNDLE)
    assert vec.created.endswith("+00:00") and "T" in vec.created
    assert vec.source == "learned" and vec.class_ids == [] and vec.extra == {}


def test_atomic_write_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_vector(make_vec(seed=1), tmp_path / "v.safetensors")
    save_vector(make_vec(seed=2), tmp_path / "v.safetensors")  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["v.safetensors"]

    def boom(self: Path, data: bytes) -> int:
        with open(self, "wb") as f:
            f.write(data[:10])  # half a file in the temp path, then the disk fills
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", boom)
    with pytest.raises(OSError, match="disk full"):
        save_vector(make_vec(seed=3), tmp_path / "v.safetensors")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["v.safetensors"]
    assert load_vector(tmp_path / "v.safetensors").delta.equal(make_vec(seed=2).delta)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a safetensors file"),
        (b"hello world, definitely not tensors", "not a safetensors file"),
        (struct.pack("<Q", 5) + b"[1,2]", "not a safetensors file"),
        (struct.pack("<Q", 1 << 40) + b"{}", "not a safetensors file"),
        (b"\x93NUMPY\x01\x00", "NumPy"),
    ],
)
def test_load_refuses_non_safetensors(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(VectorError, match=match):
        load_vector(path)


def test_load_error_cases(tmp_path: Path) -> None:
    cases = {
        "no_marker": (torch.zeros(SHAPE), {"editgan": json.dumps({"name": "x", "bundle_id": BUNDLE})}, "format marker"),
        "no_meta": (torch.zeros(SHAPE), None, "format marker"),
        "wrong_marker": (torch.zeros(SHAPE), {**good_meta(), "format": "editgan-vector/9"}, "editgan-vector/9"),
        "bad_json": (torch.zeros(SHAPE), {"format": vectors.FORMAT, "editgan": "{nope"}, "not JSON"),
        "no_bundle": (torch.zeros(SHAPE), {"format": vectors.FORMAT, "editgan": '{"name": "x"}'}, "no bundle id"),
        "nan": (torch.full(SHAPE, float("nan")), good_meta(), "NaN or infinite"),
        "inf": (torch.zeros(SHAPE).index_fill(0, torch.tensor([2]), float("inf")), good_meta(), "NaN or infinite"),
        "ndim3": (torch.zeros(1, *SHAPE), good_meta(), "2-D"),
        "ndim1": (torch.zeros(128), good_meta(), "2-D"),
        "ints": (torch.zeros(SHAPE, dtype=torch.int32), good_meta(), "floats"),
    }
    for stem, (delta, meta, match) in cases.items():
        path = write_raw(tmp_path / f"{stem}.safetensors", delta, meta)
        with pytest.raises(VectorError, match=match):
            load_vector(path)
    other = tmp_path / "other.safetensors"
    other.write_bytes(safetensors.torch.save({"weights": torch.zeros(SHAPE)}, metadata=good_meta()))
    with pytest.raises(VectorError, match="no 'delta' tensor"):
        load_vector(other)


def test_load_names_file_not_server_path(tmp_path: Path) -> None:
    with pytest.raises(VectorError, match=r"'missing\.safetensors' does not exist") as info:
        load_vector(tmp_path / "missing.safetensors")
    assert str(tmp_path) not in str(info.value)
    with pytest.raises(VectorError, match="folder"):
        load_vector(tmp_path)


def test_load_other_float_dtypes_become_float32(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "h.safetensors", torch.ones(SHAPE, dtype=torch.float16) / 3, good_meta())
    vec = load_vector(path)
    assert vec.delta.dtype == torch.float32 and torch.allclose(vec.delta, torch.full(SHAPE, 1 / 3), atol=1e-3)


def test_bundle_and_shape_mismatch_messages(tmp_path: Path) -> None:
    path = save_vector(make_vec("smile", bundle_id="car512", shape=(16, 512)), tmp_path / "smile.safetensors")
    with pytest.raises(VectorError) as info:
        load_vector(path, expect_bundle_id="faces64-demo", expect_shape=(10, 128))
    assert str(info.value).startswith(
        "vector 'smile' was learned for bundle 'car512' (latent 16x512) but the open model is 'faces64-demo' "
        "(latent 10x128)"
    )
    with pytest.raises(VectorError, match=r"bundle 'car512'.*open model is 'faces64-demo'"):
        load_vector(path, expect_bundle_id="faces64-demo")
    with pytest.raises(VectorError, match="open model has latent 10x128"):
        load_vector(path, expect_shape=(10, 128))
    same_shape_other_bundle = save_vector(make_vec(bundle_id="faces64-v2"), tmp_path / "v2.safetensors")
    with pytest.raises(VectorError, match="'faces64-v2'"):
        load_vector(same_shape_other_bundle, expect_bundle_id=BUNDLE, expect_shape=SHAPE)
    assert load_vector(path, expect_bundle_id="car512", expect_shape=(16, 512)).latent_shape == (16, 512)


def test_size_cap_refuses_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors.fileformat, "MAX_FILE_BYTES", 4096)
    big = save_vector(make_vec(), tmp_path / "big.safetensors")  # 10x128 float32 = 5 KiB
    with pytest.raises(VectorError, match="larger than"):
        load_vector(big)
    npy = tmp_path / "big.npy"
    np.save(npy, np.zeros((1, *SHAPE), np.float32))
    with pytest.raises(VectorError, match="larger than"):
        import_npy(npy, BUNDLE, SHAPE)


def test_editvector_validates_its_fields() -> None:
    with pytest.raises(VectorError, match="shape"):
        EditVector(delta=torch.zeros(3), name="x", bundle_id=BUNDLE)
    with pytest.raises(VectorError, match="floats"):
        EditVector(delta=torch.zeros(SHAPE, dtype=torch.long), name="x", bundle_id=BUNDLE)
    with pytest.raises(VectorError, match="finite"):
        EditVector(delta=torch.zeros(SHAPE), name="x", bundle_id=BUNDLE, default_scale=float("nan"))
    v = EditVector(delta=torch.zeros(SHAPE, dtype=torch.float64, requires_grad=True), name="x", bundle_id=BUNDLE)
    assert v.delta.dtype == torch.float32 and not v.delta.requires_grad


# ----------------------------------------------------------------------------------------------- npy import


@pytest.mark.parametrize("shape", [(1, 10, 128), (10, 128)])
def test_import_npy_accepts_official_layouts(tmp_path: Path, shape: tuple[int, ...]) -> None:
    arr = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.save(tmp_path / "smile_vector.npy", arr)
    vec = import_npy(tmp_path / "smile_vector.npy", BUNDLE, SHAPE, class_ids=[2], default_scale=0.5)
    assert vec.name == "smile_vector" and vec.source == "imported-npy" and vec.bundle_id == BUNDLE
    assert vec.class_ids == [2] and vec.default_scale == 0.5
    assert torch.equal(vec.delta, torch.from_numpy(arr.reshape(SHAPE)))


def test_import_npy_car512_shape_and_big_endian(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).standard_normal((1, 16, 512)).astype(">f4")
    np.save(tmp_path / "car.npy", arr)
    vec = import_npy(tmp_path / "car.npy", "car512", (16, 512), name="headlights")
    assert vec.name == "headlights" and vec.latent_shape == (16, 512)
    assert np.array_equal(vec.delta.numpy(), arr[0].astype(np.float32))


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.array([{"evil": 1}], dtype=object), "Python objects"),
        (np.zeros((1, 16, 512), np.float32), "16x512 latent offset but bundle 'faces64-demo' uses latent 10x128"),
        (np.zeros((2, 10, 128), np.float32), "shape"),
        (np.zeros((1, 1, 10, 128), np.float32), "shape"),
        (np.zeros((10, 128), np.int64), "int64"),
        (np.full((1, 10, 128), np.nan, np.float32), "NaN"),
    ],
)
def test_import_npy_refusals(tmp_path: Path, array: np.ndarray, match: str) -> None:
    path = tmp_path / "v.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(VectorError, match=match):
        import_npy(path, BUNDLE, SHAPE)


def test_import_npy_refuses_npz_and_junk(tmp_path: Path) -> None:
    np.savez(tmp_path / "v.npz", v=np.zeros(SHAPE, np.float32))
    with pytest.raises(VectorError, match="npz"):
        import_npy(tmp_path / "v.npz", BUNDLE, SHAPE)
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(VectorError, match="not a readable"):
        import_npy(tmp_path / "junk.npy", BUNDLE, SHAPE)
    (tmp_path / "text.npy").write_text("1,2,3")
    with pytest.raises(VectorError, match="not a NumPy"):
        import_npy(tmp_path / "text.npy", BUNDLE, SHAPE)


# ----------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("smile", "smile"),
        ("  big   smile\t\n", "big smile"),
        ("smile-v2_final", "smile-v2_final"),
        ("Lächeln 😀 ok", "Lächeln ok"),
        ("笑顔", "笑顔"),
        ("../../etc/passwd", "etc passwd"),
        ("/abs/path", "abs path"),
        ("C:\\Windows\\system32", "C Windows system32"),
        ("a\x00b", "a b"),
        ("v1.2.3", "v1 2 3"),
        ("--rm -rf", "rm -rf"),
        ("smile (2)", "smile (2)"),
        ("e\u0301t\u00e9", "\u00e9t\u00e9"),  # NFC: one file name, however it was typed
        ("\uff53\uff4d\uff49\uff4c\uff45", "smile"),  # full-width letters are stored as the plain ones (NFKC)
        ("\U0001d42c\U0001d426\U0001d422\U0001d425\U0001d41e", "smile"),  # mathematical bold
        ("\ufb01ne", "fine"),  # a ligature
    ],
)
def test_sanitize_name(raw: str, clean: str) -> None:
    assert sanitize_name(raw) == clean


@pytest.mark.parametrize(
    "raw", ["", "   ", "..", ".", "/", "../..", "\x00", "CON", "nul ", "com1", "LPT9", "com²", "😀😀", "()", "- _"]
)
def test_sanitize_refuses(raw: str) -> None:
    with pytest.raises(VectorError):
        sanitize_name(raw)


@pytest.mark.parametrize("raw", ["\u041epen mouth", "smil\u0435", "\u03bfpen"])  # Cyrillic О, е; Greek ο
def test_sanitize_refuses_names_mixing_lookalike_alphabets(raw: str) -> None:
    with pytest.raises(VectorError, match="mixes"):
        sanitize_name(raw)
    smile_ru = "\u0443\u043b\u044b\u0431\u043a\u0430 2"  # one alphabet is fine
    assert sanitize_name(smile_ru) == smile_ru


def test_sanitize_limits_length_in_chars_and_bytes() -> None:
    assert len(sanitize_name("a" * 500)) == 64
    wide = sanitize_name("字" * 64)  # 3 bytes each in UTF-8
    assert len(wide.encode()) <= 192 and len(wide) == 64
    four = sanitize_name("𝒜" * 64)  # 4-byte letters: 256 bytes uncapped
    assert len(four.encode()) <= 192 and four


@pytest.mark.parametrize(
    "evil", ["../../etc/passwd", "/etc/passwd", "..\\..\\boot.ini", "a/../../b", "x\x00.safetensors", "~/.ssh/id"]
)
def test_library_never_writes_outside_root(lib: VectorLibrary, tmp_path: Path, evil: str) -> None:
    before = {p for p in tmp_path.rglob("*")}
    saved = lib.save(make_vec(evil, seed=5))
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p.parent == lib.root or p == lib.root for p in created)
    assert (lib.root / f"{saved.name}.safetensors").is_file()
    assert lib.get(evil).delta.equal(make_vec(seed=5).delta)
    renamed = lib.rename(saved.name, evil + " 2")
    assert {p.parent for p in lib.root.iterdir()} == {lib.root} and renamed.name.endswith("2")


# ----------------------------------------------------------------------------------------------- library


def test_library_list_presets_first_then_user_by_created(lib: VectorLibrary) -> None:
    lib.save(make_vec("zeta", created="2024-01-01T00:00:00+00:00"))
    lib.save(make_vec("alpha", created="2024-03-01T00:00:00Z"))
    lib.save(make_vec("mid", created="2024-02-01T00:00:00"))
    names = [v.name for v in lib.list()]
    assert names == ["Arched brows", "Open mouth", "zeta", "mid", "alpha"]
    assert lib.is_preset("open mouth") and not lib.is_preset("zeta")
    assert lib.problems == []


def test_library_get_is_case_insensitive_and_reports_missing(lib: VectorLibrary) -> None:
    lib.save(make_vec("Smile", seed=3))
    assert lib.get("smile").name == "Smile"
    assert lib.get("  SMILE ").delta.equal(make_vec(seed=3).delta)
    with pytest.raises(VectorNotFoundError, match="no vector named 'frown'"):
        lib.get("frown")


def test_library_skips_bad_files_and_reports(lib: VectorLibrary, tmp_path: Path) -> None:
    lib.save(make_vec("good"))
    (lib.root / "junk.safetensors").write_bytes(b"not a vector")
    save_vector(make_vec("car", bundle_id="car512", shape=(16, 512)), lib.root / "car.safetensors")
    (lib.root / "notes.txt").write_text("ignored, wrong suffix")
    vecs = lib.list()
    assert [v.name for v in vecs] == ["Arched brows", "Open mouth", "good"]
    assert sorted(p.name for p, _ in lib.problems) == ["car.safetensors", "junk.safetensors"]
    assert any("car512" in why for _, why in lib.problems)


def test_library_save_clash_and_overwrite(lib: VectorLibrary) -> None:
    lib.save(make_vec("smile", seed=1))
    with pytest.raises(VectorError, match="already exists"):
        lib.save(make_vec("smile", seed=2))
    with pytest.raises(VectorError, match="already exists"):
        lib.save(make_vec("SMILE", seed=2))  # one file on case-insensitive disks
    lib.save(make_vec("Smile", seed=2), overwrite=True)
    assert files(lib.root) == ["Smile.safetensors"]
    assert lib.get("smile").delta.equal(make_vec(seed=2).delta)


def test_library_refuses_preset_names_and_foreign_vectors(lib: VectorLibrary) -> None:
    with pytest.raises(VectorError, match="preset"):
        lib.save(make_vec("open mouth"), overwrite=True)
    for lookalike in ["Open_Mouth", "open-mouth", "\uff2f\uff50\uff45\uff4e mouth"]:  # separators, full-width
        with pytest.raises(VectorError, match="preset"):
            lib.save(make_vec(lookalike))
    with pytest.raises(VectorError, match="car512"):
        lib.save(make_vec("x", bundle_id="car512", shape=(16, 512)))
    with pytest.raises(VectorError, match="latent 16x512"):
        lib.save(make_vec("x", shape=(16, 512)))
    assert not lib.root.exists() or not files(lib.root)


def test_library_homoglyph_names_never_sit_beside_the_original(lib: VectorLibrary, tmp_path: Path) -> None:
    """Save and rename refuse a look-alike of an existing name; import stores the plain spelling, numbered."""
    wide_open = "\uff4f\uff50\uff45\uff4e mouth"  # full-width 'open' beside the preset 'Open mouth'
    with pytest.raises(VectorError, match="preset"):
        lib.save(make_vec(wide_open))
    lib.save(make_vec("smile"))
    with pytest.raises(VectorError, match="already exists"):
        lib.save(make_vec("\uff53\uff4d\uff49\uff4c\uff45"))
    lib.save(make_vec("frown"))
    with pytest.raises(VectorError, match="already exists"):
        lib.rename("frown", "\uff33\uff2d\uff29\uff2c\uff25")
    with pytest.raises(VectorError, match="preset"):
        lib.save(make_vec("\U0001d428pen mouth"))  # mathematical bold 'o'
    src = save_vector(make_vec(wide_open), tmp_path / "wide.safetensors")
    imported = lib.import_file(src)
    assert imported.name == "open mouth (2)"
    names = [v.name for v in lib.list()]
    assert all(name == unicodedata.normalize("NFKC", name) for name in names)
    assert sorted(names) == ["Arched brows", "Open mouth", "frown", "open mouth (2)", "smile"]


def test_library_rename(lib: VectorLibrary) -> None:
    lib.save(make_vec("smile", seed=1, description="d", class_ids=[4]))
    lib.save(make_vec("frown", seed=2))
    with pytest.raises(VectorError, match="already exists"):
        lib.rename("smile", "Frown")
    with pytest.raises(VectorError, match="preset"):
        lib.rename("open mouth", "mine")
    with pytest.raises(VectorNotFoundError):
        lib.rename("nope", "x")
    out = lib.rename("smile", "grin")
    assert out.name == "grin" and out.description == "d" and out.class_ids == [4]
    assert files(lib.root) == ["frown.safetensors", "grin.safetensors"]
    assert lib.get("grin").delta.equal(make_vec(seed=1).delta)
    lib.rename("grin", "Grin")  # case-only rename is not a clash with itself
    assert [v.name for v in lib.list()][-1] == "Grin"
    assert files(lib.root) == ["Grin.safetensors", "frown.safetensors"]


def test_library_delete(lib: VectorLibrary) -> None:
    lib.save(make_vec("smile"))
    with pytest.raises(VectorError, match=r"preset.*cannot be deleted"):
        lib.delete("Open mouth")
    lib.delete("SMILE")
    assert [v.name for v in lib.list()] == ["Arched brows", "Open mouth"]
    with pytest.raises(VectorNotFoundError):
        lib.delete("smile")


def test_library_export_and_import_round_trip(lib: VectorLibrary, tmp_path: Path) -> None:
    lib.save(make_vec("smile", seed=4, class_ids=[1, 2], default_scale=1.5))
    out = lib.export("smile", tmp_path)
    assert out == tmp_path / "smile.safetensors"
    preset_out = lib.export("open mouth", tmp_path / "copy.safetensors")
    assert load_vector(preset_out).name == "Open mouth"

    other = VectorLibrary(tmp_path / "other_user", BUNDLE, SHAPE)
    got = other.import_file(out)
    assert got.name == "smile" and got.class_ids == [1, 2] and got.default_scale == 1.5
    assert got.delta.equal(make_vec(seed=4).delta)
    assert [v.name for v in other.list()] == ["smile"]


def test_library_import_picks_unique_names(lib: VectorLibrary, tmp_path: Path) -> None:
    src = save_vector(make_vec("smile", seed=6), tmp_path / "upload.safetensors")
    assert lib.import_file(src).name == "smile"
    assert lib.import_file(src).name == "smile (2)"
    assert lib.import_file(src).name == "smile (3)"
    assert lib.import_file(src, name="open mouth").name == "open mouth (2)"  # never shadows a preset
    assert lib.import_file(src, name="../x").name == "x"
    long = lib.import_file(src, name="n" * 80)
    assert long.name == "n" * 64 and lib.import_file(src, name="n" * 80).name == "n" * 60 + " (2)"


def test_library_import_npy_and_refusals(lib: VectorLibrary, tmp_path: Path) -> None:
    np.save(tmp_path / "edit_smile.npy", np.ones((1, *SHAPE), np.float32))
    vec = lib.import_file(tmp_path / "edit_smile.npy")
    assert vec.name == "edit_smile" and vec.source == "imported-npy"
    assert lib.import_file(tmp_path / "edit_smile.npy", name="Big smile").name == "Big smile"
    np.save(tmp_path / "car.npy", np.ones((1, 16, 512), np.float32))
    with pytest.raises(VectorError, match="16x512"):
        lib.import_file(tmp_path / "car.npy")
    foreign = save_vector(make_vec("x", bundle_id="car512", shape=(16, 512)), tmp_path / "f.safetensors")
    with pytest.raises(VectorError, match="car512"):
        lib.import_file(foreign)
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "edit_smile.npy").read_bytes())
    assert lib.import_file(tmp_path / "renamed.bin").source == "imported-npy"  # sniffed, not trusted suffix


def test_library_writes_are_atomic_and_thread_safe(lib: VectorLibrary) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(5):
                lib.save(make_vec(f"v{i}-{j}", seed=i * 10 + j))
                lib.rename(f"v{i}-{j}", f"w{i}-{j}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = files(lib.root)
    assert names == sorted(f"w{i}-{j}.safetensors" for i in range(4) for j in range(5))
    other = VectorLibrary(lib.root, BUNDLE, SHAPE)
    assert other._lock is lib._lock  # one lock per folder, whichever session object uses it


# ----------------------------------------------------------------------------------------------- arithmetic


def test_compose_arithmetic() -> None:
    a, b = make_vec("a", seed=1), make_vec("b", seed=2, default_scale=0.5)
    w = torch.randn(SHAPE)
    assert torch.allclose(compose(w, [(a, 2.0), (b, -1.0)]), w + 2 * a.delta - b.delta)
    assert torch.allclose(compose(w, [(b, None)]), w + 0.5 * b.delta)
    assert torch.allclose(compose(w, [(a.delta, 3.0)]), w + 3 * a.delta)
    assert compose(w, []) is w
    batch = torch.randn(4, *SHAPE)
    out = compose(batch, [(a, 1.0)])
    assert out.shape == batch.shape and torch.allclose(out, batch + a.delta)
    assert torch.allclose(a.applied_to(w), w + a.delta)
    assert torch.allclose(b.applied_to(batch, 2.0), batch + 2 * b.delta)
    w64 = w.double().requires_grad_()
    compose(w64, [(a, 1.0)]).sum().backward()  # gradients reach w+ for refinement
    assert w64.grad is not None and w64.grad.dtype == torch.float64


def test_compose_shape_checks() -> None:
    a = make_vec("a")
    with pytest.raises(VectorError, match="latent 10x128 but the latent is 16x512"):
        compose(torch.zeros(16, 512), [(a, 1.0)])
    with pytest.raises(VectorError, match="latent must be"):
        compose(torch.zeros(128), [(a, 1.0)])
    with pytest.raises(VectorError, match="finite"):
        compose(torch.zeros(SHAPE), [(a, float("inf"))])


def test_library_never_overwrites_a_file_holding_another_name(lib: VectorLibrary) -> None:
    lib.root.mkdir(parents=True)
    save_vector(make_vec("frown", seed=7), lib.root / "smile.safetensors")  # copied in by hand
    with pytest.raises(VectorError, match=r"file named 'smile\.safetensors'"):
        lib.save(make_vec("smile", seed=8), overwrite=True)
    assert lib.get("frown").delta.equal(make_vec(seed=7).delta)
    assert lib.import_file(lib.export("frown", lib.root.parent / "out.safetensors"), name="smile").name == "smile (2)"
