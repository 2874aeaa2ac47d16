"""Where saved vectors live, that they outlast the library object, and that threads and processes share a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import filelock
import pytest
import torch

from editgan_core.cli import resolve_vectors
from editgan_core.vectors import (
    EditVector,
    VectorError,
    VectorLibrary,
    load_vector,
    location,
    open_library,
    save_vector,
)
from editgan_core.vectors import library as library_module

BUNDLE = "faces64-demo"
SHAPE = (10, 128)
REPO = Path(__file__).resolve().parents[1]


def make_vec(name: str, seed: int = 0, bundle_id: str = BUNDLE) -> EditVector:
    delta = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))
    return EditVector(delta=delta, name=name, bundle_id=bundle_id)


def make_bundle(root: Path, bundle_id: str = BUNDLE, **manifest) -> Path:
    """A bundle folder as far as the library cares: a manifest and one preset."""
    root.mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"id": bundle_id, "vectors_dir": "vectors", **manifest}))
    save_vector(make_vec("Open mouth", seed=99, bundle_id=bundle_id), root / "vectors" / "open_mouth.safetensors")
    return root / "vectors"


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock")


# ----------------------------------------------------------------------------------------------- where


def test_editgan_home_wins(tmp_path: Path, editgan_home: Path) -> None:
    lib = open_library(BUNDLE, SHAPE, make_bundle(tmp_path / "b"))
    assert lib.root == editgan_home / "vectors" / BUNDLE
    assert [v.name for v in lib.list()] == ["Open mouth"] and lib.is_preset("open mouth")


def test_writable_bundle_keeps_user_vectors_beside_its_presets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDITGAN_HOME")
    assert open_library(BUNDLE, SHAPE, make_bundle(tmp_path / "a")).root == tmp_path / "a" / "user_vectors"
    named = open_library(BUNDLE, SHAPE, make_bundle(tmp_path / "b", user_vectors_dir="mine/vectors"))
    assert named.root == tmp_path / "b" / "mine" / "vectors"
    foreign = make_bundle(tmp_path / "c", bundle_id="other")  # presets folder of a bundle with another id
    assert open_library(BUNDLE, SHAPE, foreign).root == location.editgan_home() / "vectors" / BUNDLE


@pytest.mark.parametrize("value", ["../outside", "/abs/olute", "vectors", "C:\\x", "", 3])
def test_manifest_user_folder_must_be_a_new_folder_inside_the_bundle(tmp_path: Path, monkeypatch, value) -> None:
    monkeypatch.delenv("EDITGAN_HOME")
    presets = make_bundle(tmp_path / "b", user_vectors_dir=value)
    with pytest.raises(VectorError, match="user_vectors_dir"):
        open_library(BUNDLE, SHAPE, presets)


def test_read_only_or_installed_bundles_fall_back_to_the_user_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDITGAN_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "editgan-studio" / "vectors"
    hub = make_bundle(tmp_path / "hub" / "models--someone--faces" / "snapshots" / "abc123")
    assert open_library(BUNDLE, SHAPE, hub).root == cache / BUNDLE
    presets = make_bundle(tmp_path / "ro")
    monkeypatch.setattr(location, "_writable", lambda folder: False)  # as on a read-only disk (root ignores modes)
    lib = open_library(BUNDLE, SHAPE, presets)
    assert lib.root == cache / BUNDLE
    lib.save(make_vec("mine"))
    assert files(cache / BUNDLE) == ["mine.safetensors"] and files(presets) == ["open_mouth.safetensors"]
    assert open_library("org/model", SHAPE).root.parent == cache  # ids that are no folder name are made one
    assert open_library("org/model", SHAPE).root != open_library("org_model", SHAPE).root


# ----------------------------------------------------------------------------------------------- lasting


def test_saved_renamed_and_deleted_vectors_outlast_the_library_object(tmp_path: Path) -> None:
    presets = make_bundle(tmp_path / "b")
    open_library(BUNDLE, SHAPE, presets).save(make_vec("smile", seed=1))
    again = open_library(BUNDLE, SHAPE, presets)
    assert [v.name for v in again.list()] == ["Open mouth", "smile"]
    again.rename("smile", "grin")
    assert [v.name for v in open_library(BUNDLE, SHAPE, presets).list()] == ["Open mouth", "grin"]
    assert load_vector(again.root / "grin.safetensors").name == "grin" and files(again.root) == ["grin.safetensors"]
    open_library(BUNDLE, SHAPE, presets).delete("GRIN")
    assert [v.name for v in open_library(BUNDLE, SHAPE, presets).list()] == ["Open mouth"]
    assert files(again.root) == []
    with pytest.raises(VectorError, match="preset"):
        again.delete("open mouth")
    assert files(presets) == ["open_mouth.safetensors"]


def test_listing_again_reads_only_files_that_changed(tmp_path: Path, monkeypatch) -> None:
    lib = open_library(BUNDLE, SHAPE, make_bundle(tmp_path / "b"))
    lib.save(make_vec("smile", seed=1))
    reads: list[str] = []
    real = library_module.load_vector
    monkeypatch.setattr(library_module, "load_vector", lambda path, *a: reads.append(path.name) or real(path, *a))
    lib.list()
    assert reads == ["smile.safetensors"]  # the presets were read when it saved, the new file not yet
    assert [lib.is_preset(v.name) for v in lib.list()] == [True, False] and reads == ["smile.safetensors"]
    open_library(BUNDLE, SHAPE, tmp_path / "b" / "vectors").save(make_vec("smile", seed=2), overwrite=True)
    reads.clear()
    assert lib.get("smile").delta.equal(make_vec("x", seed=2).delta)  # another session's overwrite is seen
    assert reads == ["smile.safetensors"]


def test_the_batch_cli_finds_vectors_saved_in_the_studio(tmp_path: Path) -> None:
    presets = make_bundle(tmp_path / "b")
    open_library(BUNDLE, SHAPE, presets).save(make_vec("mine", seed=3))
    pipeline = SimpleNamespace(bundle=SimpleNamespace(id=BUNDLE, vectors_dir=presets), latent_shape=SHAPE)
    [(mine, scale), (preset, _)] = resolve_vectors(pipeline, [("MINE", 0.5), ("open mouth", None)], None)
    assert mine.delta.equal(make_vec("x", seed=3).delta) and scale == 0.5 and preset.name == "Open mouth"


def test_a_failed_rename_leaves_the_vector_under_its_old_name(tmp_path: Path, monkeypatch) -> None:
    lib = VectorLibrary(tmp_path / "user", BUNDLE, SHAPE)
    lib.save(make_vec("smile", seed=2))

    def full_disk(vec, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(library_module, "save_vector", full_disk)
    with pytest.raises(OSError, match="No space"):
        lib.rename("smile", "grin")
    assert files(lib.root) == ["smile.safetensors"] and lib.get("smile").delta.equal(make_vec("x", seed=2).delta)


def test_temp_files_of_a_killed_writer_are_cleaned(tmp_path: Path) -> None:
    lib = VectorLibrary(tmp_path / "user", BUNDLE, SHAPE)
    lib.root.mkdir()
    (lib.root / ".smile.safetensors.k2j4.tmp").write_bytes(b"half a vect")
    lib.save(make_vec("frown"))
    assert files(lib.root) == ["frown.safetensors"] and lib.problems == []


def test_a_stuck_lock_or_an_unwritable_folder_gives_a_clear_message(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(library_module, "LOCK_TIMEOUT_S", 0.2)
    lib = VectorLibrary(tmp_path / "user", BUNDLE, SHAPE)
    lib.root.mkdir()
    # a second lock object on the file is another process as far as flock can tell
    with filelock.FileLock(lib.root / ".lock"), pytest.raises(VectorError, match="busy"):
        lib.save(make_vec("smile"))
    assert lib.save(make_vec("smile")).name == "smile"
    (tmp_path / "a_file").write_text("")
    blocked = VectorLibrary(tmp_path / "a_file" / "user", BUNDLE, SHAPE)
    assert blocked.list() == []
    with pytest.raises(VectorError, match="cannot be written") as info:
        blocked.save(make_vec("smile"))
    assert str(tmp_path) not in str(info.value)


# ----------------------------------------------------------------------------------------------- at once

WORKER = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    import torch
    from editgan_core.vectors import EditVector, VectorError, VectorLibrary

    root, upload, worker = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    lib = VectorLibrary(root, "faces64-demo", (10, 128), read_only_roots=[sys.argv[4]])
    (root.parent / f"ready-{worker}").touch()
    while not (root.parent / "go").exists():
        time.sleep(0.005)
    won, failures = [], []

    def work(t):
        try:
            for j in range(4):
                seed = 1000 * int(worker) + 10 * t + j
                delta = torch.randn(10, 128, generator=torch.Generator().manual_seed(seed))
                lib.save(EditVector(delta=delta, name=f"p{worker}-{t}-{j}", bundle_id="faces64-demo"))
                lib.rename(f"p{worker}-{t}-{j}", f"q{worker}-{t}-{j}")
                lib.import_file(upload)
                lib.list()
            try:
                lib.save(EditVector(delta=torch.ones(10, 128), name="Contested", bundle_id="faces64-demo"))
                won.append(t)
            except VectorError as exc:
                assert "already exists" in str(exc), exc
        except BaseException as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(len(won), len(failures), *failures, sep="\\n")
""")


def test_threads_in_two_processes_save_rename_and_import_without_loss_or_duplicates(tmp_path: Path) -> None:
    presets = make_bundle(tmp_path / "bundle")
    root = tmp_path / "shared" / "user"
    root.parent.mkdir()
    upload = save_vector(make_vec("upload", seed=7), tmp_path / "upload.safetensors")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(upload), str(w), str(presets)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for w in (1, 2)]
    deadline = time.monotonic() + 120
    while not all((root.parent / f"ready-{w}").exists() for w in (1, 2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), procs[0].communicate()
        time.sleep(0.01)
    threads_here = [threading.Thread(target=VectorLibrary(root, BUNDLE, SHAPE).import_file, args=(upload,))
                    for _ in range(2)]  # this process joins in too
    (root.parent / "go").touch()
    for t in threads_here:
        t.start()
    outputs = [p.communicate(timeout=120) for p in procs]
    for t in threads_here:
        t.join()
    assert [p.returncode for p in procs] == [0, 0], outputs
    won = [int(out.split("\n")[0]) for out, _ in outputs]
    assert all(out.split("\n")[1] == "0" for out, _ in outputs), outputs
    assert sum(won) == 1  # exactly one session got the contested name

    names = files(root)
    renamed = {f"q{w}-{t}-{j}.safetensors" for w in (1, 2) for t in range(3) for j in range(4)}
    uploads = {"upload.safetensors"} | {f"upload ({n}).safetensors" for n in range(2, 2 * 3 * 4 + 2 + 1)}
    assert set(names) == renamed | uploads | {"Contested.safetensors"}
    assert len(names) == len(renamed) + 2 * 3 * 4 + 2 + 1
    lib = VectorLibrary(root, BUNDLE, SHAPE, read_only_roots=[presets])
    listed = lib.list()
    assert lib.problems == [] and len(listed) == len(names) + 1  # every file reads back whole; plus the preset
    for w, t, j in [(1, 0, 0), (2, 2, 3), (1, 1, 2)]:
        expect = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1000 * w + 10 * t + j))
        assert lib.get(f"q{w}-{t}-{j}").delta.equal(expect)
