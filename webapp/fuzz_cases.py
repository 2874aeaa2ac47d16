"""The malformed inputs and the session workload of the fuzz and soak command (``webapp.fuzz``).

``hostile_files`` writes the files (odd pictures, bad label maps, hostile vector files); ``malformed``
sends each through the page's events in a fresh session, with out-of-order calls in between, and
checks the few that should be accepted for silent wrong results; ``session_workload`` is what one
soak client does over and over: pictures, strength changes, edits, presets, exports, imports.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image
from safetensors.numpy import save as st_save

from webapp.fuzz_client import Tally, WrongResult, call, download, file_data, post_body, post_files, raw_call

FORMAT = "editgan-vector/1"
FAST = "fast (encoder only)"


def _png(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(array).save(path, format="PNG")
    return path


def _vector(path: Path, delta: np.ndarray, bundle_id: str, **meta: Any) -> Path:
    info = {"name": path.stem, "bundle_id": bundle_id, **meta}
    text = meta.pop("editgan_text", None) or json.dumps(info)
    path.write_bytes(st_save({"delta": delta}, metadata={"format": FORMAT, "editgan": text}))
    return path


def vector_facts(client: Client, folder: Path) -> tuple[str, tuple[int, int], list[str], Path]:
    """(bundle id, latent shape, the presets' names, the first one's file) from a preset exported by the server."""
    preset = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/export_vector"]
    names = re.findall(r"'([^']+)'", preset["parameters"][0]["python_type"]["type"])
    name = names[0]
    data = download(client, call(client, "/export_vector", name))
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    info = json.loads(header["__metadata__"]["editgan"])
    path = folder / f"{name}.safetensors"
    path.write_bytes(data)
    return info["bundle_id"], tuple(header["delta"]["shape"]), names, path


def hostile_files(folder: Path, bundle_id: str, shape: tuple[int, int]) -> dict[str, Path]:
    """Every malformed file the fuzz sends, by case name."""
    rng = np.random.default_rng(0)
    f: dict[str, Path] = {}
    (folder / "junk.png").write_bytes(rng.bytes(2 * 1024 * 1024))
    f["junk.png"] = folder / "junk.png"
    (folder / "text.jpg").write_text("not a picture\n" * 100)
    f["text.jpg"] = folder / "text.jpg"
    (folder / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>')
    f["drawing.svg"] = folder / "drawing.svg"
    whole = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(whole, format="PNG")
    (folder / "truncated.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    f["truncated.png"] = folder / "truncated.png"
    f["9000px.png"] = _png(np.zeros((9000, 9000), np.uint8), folder / "9000px.png")  # ~80 kB, 81 MP
    f["4096px.png"] = _png(np.zeros((4096, 4096, 4), np.uint8), folder / "4096px.png")
    f["1024px.png"] = _png(np.full((1024, 1024, 4), 255, np.uint8), folder / "1024px.png")
    f["1px.png"] = _png(np.full((1, 1, 3), 128, np.uint8), folder / "1px.png")
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(folder / "map.jpg", format="JPEG")
    f["map.jpg"] = folder / "map.jpg"
    f["noise256.png"] = _png(rng.integers(0, 255, (256, 256, 4), dtype=np.uint8), folder / "noise256.png")
    small = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    f["junk.safetensors"] = folder / "junk.safetensors"
    f["junk.safetensors"].write_bytes(rng.bytes(4096))
    f["pickle.safetensors"] = folder / "pickle.safetensors"
    f["pickle.safetensors"].write_bytes(pickle.dumps({"delta": [1.0] * 8}))
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    f["objects.npy"] = folder / "objects.npy"
    np.savez(folder / "archive.npz", delta=small)
    f["archive.npz"] = folder / "archive.npz"
    deep = json.dumps({"name": "deep", "bundle_id": bundle_id, "extra": {"x": "@"}}).replace(
        '"@"', "[" * 30000 + "]" * 30000)
    f["deep.safetensors"] = _vector(folder / "deep.safetensors", small, bundle_id, editgan_text=deep)
    f["3e38.safetensors"] = _vector(folder / "3e38.safetensors", np.full(shape, 3e38, np.float32), bundle_id)
    f["loud.safetensors"] = _vector(folder / "loud.safetensors", np.full(shape, 500.0, np.float32), bundle_id)
    f["strength1e6.safetensors"] = _vector(folder / "strength1e6.safetensors", small, bundle_id, default_scale=1e6)
    f["strength99.safetensors"] = _vector(folder / "strength99.safetensors", small * 20, bundle_id,
                                          default_scale=99.0)
    f["nan.safetensors"] = _vector(folder / "nan.safetensors", np.full(shape, np.nan, np.float32), bundle_id)
    f["shape.safetensors"] = _vector(folder / "shape.safetensors", np.zeros((3, 7), np.float32), bundle_id)
    f["other.safetensors"] = _vector(folder / "other.safetensors", small, "another-model")
    f["longdesc.safetensors"] = _vector(folder / "longdesc.safetensors", small, bundle_id, description="d" * 60000)
    f["fine.safetensors"] = _vector(folder / "fine.safetensors", small, bundle_id, default_scale=2.0)
    return f


def _editor(*parts: Path | None, layers: int = 1) -> dict[str, Any]:
    background, layer, composite = (handle_file(str(p)) if p is not None else None for p in parts)
    return {"background": background, "layers": [layer] * layers if layer is not None else [],
            "composite": composite, "id": None}


def _check_picture(client: Client, outputs: Any, index: int, what: str) -> None:
    """A rendered picture that is one flat colour is a silent wrong result (a black render, say)."""
    picture = np.asarray(Image.open(io.BytesIO(download(client, outputs[index]))))
    if picture.std() < 1.0:
        raise WrongResult(f"{what}: the picture is one flat colour")


def _saved_and_listed(client: Client, name: str) -> None:
    out = call(client, "/save_vector", name, "what it does")
    listed = out[2] if isinstance(out[2], dict) else {}
    choices = [c[0] if isinstance(c, list | tuple) else c for c in listed.get("choices", [])]
    if name not in choices:
        raise WrongResult(f"'Saved' but '{name}' is not in the vector list")


def _learn_an_edit(client: Client, folder: Path, steps: int = 5) -> None:
    """Paint a block of another class into the current label map and learn the edit (for the save cases)."""
    out = call(client, "/sample", random.randrange(2**31 - 1), 0.7, 0.5)
    labels = np.asarray(Image.open(io.BytesIO(download(client, out[4]))).convert("RGB"))
    colours = np.unique(labels.reshape(-1, 3), axis=0)
    side = labels.shape[0]
    painted = labels.copy()
    painted[side // 3: side // 2, side // 3: side // 2] = colours[len(colours) // 2]
    path = folder / f"painted-{random.randrange(10**9)}.png"
    rgba = np.concatenate([painted.repeat(4, 0).repeat(4, 1), np.full((side * 4, side * 4, 1), 255, np.uint8)], 2)
    _png(rgba, path)
    try:
        call(client, "/edit", _editor(path, None, path), steps, 0.5)
    finally:
        path.unlink(missing_ok=True)


def malformed(client_for: Callable[[], Client], base_url: str, files: dict[str, Path], preset: str,
              tally: Tally) -> None:
    """Every malformed case once, each in a fresh session (plus out-of-order calls on fresh sessions)."""
    folder = files["junk.png"].parent

    def case(name: str, expect: str, fn: Callable[[Client], Any]) -> None:
        client = client_for()
        tally.run(name, lambda: fn(client), expect)

    for key in ("junk.png", "text.jpg", "drawing.svg", "truncated.png", "9000px.png"):
        case(f"embed {key}", "refuse", lambda c, k=key: call(c, "/embed", handle_file(str(files[k])), FAST, 10, 0.5))
    case("embed 1px.png", "ok", lambda c: call(c, "/embed", handle_file(str(files["1px.png"])), FAST, 10, 0.5))
    for key in ("junk.png", "4096px.png", "1024px.png", "map.jpg", "truncated.png"):
        for api in ("/paint", "/edit"):
            args = (5, 0.5) if api == "/edit" else ()
            case(f"{api[1:]} {key}", "refuse", lambda c, k=key, a=api, x=args: call(
                c, a, _editor(files["1px.png"], files[k], files[k]), *x))
    case("paint 6 layers", "refuse", lambda c: call(c, "/paint", _editor(None, files["noise256.png"], None, layers=6)))
    case("paint noise", "either", lambda c: call(c, "/paint", _editor(None, files["noise256.png"], None)))
    for key in ("junk.safetensors", "pickle.safetensors", "objects.npy", "archive.npz", "deep.safetensors",
                "3e38.safetensors", "loud.safetensors", "strength1e6.safetensors", "strength99.safetensors",
                "nan.safetensors", "shape.safetensors", "other.safetensors", "longdesc.safetensors"):
        case(f"import {key}", "refuse", lambda c, k=key: call(c, "/import_vector", handle_file(str(files[k]))))

    def import_and_apply(c: Client) -> None:
        name = call(c, "/import_vector", handle_file(str(files["fine.safetensors"])))[0]
        name = name.split("**")[1] if "**" in name else "fine"
        _check_picture(c, call(c, "/apply_vectors", name, "", 0.5), 3, f"applying imported '{name}'")
        call(c, "/delete_vector", name, 0.5)

    case("import fine and apply", "ok", import_and_apply)
    for path in ("/etc/passwd", "/proc/self/environ", "../../../etc/hosts"):
        case(f"server file {path} as vector", "refuse", lambda c, p=path: raw_call(c, "/import_vector", [file_data(p)]))
        case(f"server file {path} as photo", "refuse", lambda c, p=path: raw_call(
            c, "/embed", [file_data(p, "x.png"), FAST, 0, 0.5]))
    for label, data in (("NaN seed", [float("nan"), 0.7, 0.5]), ("inf truncation", [1, float("inf"), 0.5]),
                        ("text seed", ["many", 0.7, 0.5]), ("nested seed", [[[[[1]]]], 0.7, 0.5]),
                        ("missing inputs", []), ("deep JSON", "[null, " + "[" * 5000 + "]" * 5000 + ", 0.7, 0.5]")):
        case(f"sample {label}", "refuse", lambda c, d=data: raw_call(c, "/sample", d))
    case("sample seed -1", "refuse", lambda c: call(c, "/sample", -1, 0.7, 0.5))
    case("sample truncation 50", "refuse", lambda c: call(c, "/sample", 1, 50, 0.5))
    case("apply 1 MB of names", "refuse", lambda c: call(c, "/apply_vectors", "smile," * 200000, "", 0.5))
    case("apply strength 1e9", "refuse", lambda c: call(c, "/apply_vectors", preset, "1e9", 0.5))
    case("apply strength nan", "refuse", lambda c: call(c, "/apply_vectors", preset, "nan", 0.5))
    case("apply unknown", "refuse", lambda c: call(c, "/apply_vectors", "no such vector", "", 0.5))
    case("save 2 MB description", "refuse", lambda c: call(c, "/save_vector", "wordy", "d" * 2 * 1024 * 1024))
    case("save 5000-char name", "refuse", lambda c: call(c, "/save_vector", "n" * 5000, ""))
    case("save before any edit", "refuse", lambda c: call(c, "/save_vector", "early", ""))
    case("rename preset", "refuse", lambda c: call(c, "/rename_vector", preset, "mine", 0.5))
    case("delete preset", "refuse", lambda c: call(c, "/delete_vector", preset, 0.5))
    case("refine with nothing active", "refuse", lambda c: call(c, "/refine", 10, 0.5))
    case("edit without painting", "refuse", lambda c: call(c, "/edit", None, 5, 0.5))
    case("undo on a new session", "either", lambda c: call(c, "/undo", 0.5))
    case("redo on a new session", "either", lambda c: call(c, "/redo", 0.5))
    case("cancel with nothing running", "either", lambda c: call(c, "/cancel"))
    case("export on a new session", "either", lambda c: call(c, "/export"))

    def learn_then_save(c: Client) -> None:
        _learn_an_edit(c, folder)
        name = f"fuzz {random.randrange(10**6)}"
        _saved_and_listed(c, name)
        call(c, "/delete_vector", name, 0.5)

    case("edit, save and list", "ok", learn_then_save)
    case("edit, then a 2 MB description", "refuse", lambda c: (_learn_an_edit(c, folder), call(
        c, "/save_vector", "wordy", "d" * 2 * 1024 * 1024)))
    case("300 files in one upload", "refuse", lambda c: post_files(base_url, 300))
    case("2 files in one upload", "ok", lambda c: post_files(base_url, 2))
    case("8 MB request body", "refuse", lambda c: post_body(base_url, 8 * 1024 * 1024))


def refused_burst(client_for: Callable[[], Client], files: dict[str, Path], count: int, tally: Tally) -> None:
    """``count`` refused calls carrying 2 MB each: what they leave in the server's memory is measured around it."""
    client = client_for()
    for _ in range(count):
        tally.run("refused 2 MB call", lambda: call(client, "/save_vector", "x", "d" * 2 * 1024 * 1024), "refuse")
        tally.run("refused 2 MB upload", lambda: call(client, "/embed", handle_file(str(files["junk.png"])), FAST, 10,
                                                      0.5), "refuse")


def session_workload(client: Client, presets: list[str], preset_file: Path, folder: Path, tally: Tally,
                     rng: random.Random, with_edits: bool = True) -> None:
    """One round of what a visitor does; every call is timed and its outcome counted."""
    preset = presets[0]
    tally.run("sample", lambda: call(client, "/sample", rng.randrange(2**31 - 1), 0.7, 0.5), "ok")
    for _ in range(4):  # a drag of the strength slider: the same vectors, new strengths (the step is amended)
        s = ", ".join(f"{rng.uniform(-3, 3):.2f}" for _ in presets[:2])
        tally.run("strength", lambda s=s: call(client, "/apply_vectors", ", ".join(presets[:2]), s, 0.5), "ok")
    tally.run("undo", lambda: call(client, "/undo", 0.5), "ok")
    tally.run("redo", lambda: call(client, "/redo", 0.5), "ok")
    tally.run("export", lambda: call(client, "/export"), "ok")
    tally.run("export_vector", lambda: call(client, "/export_vector", preset), "ok")
    if rng.random() < 0.3:
        copy = folder / f"soak-{rng.randrange(10**9)}.safetensors"
        copy.write_bytes(preset_file.read_bytes())

        def import_then_delete() -> None:
            status = call(client, "/import_vector", handle_file(str(copy)))[0]
            call(client, "/delete_vector", status.split("**")[1], 0.5)

        tally.run("import+delete", import_then_delete, "ok")
        copy.unlink(missing_ok=True)
    if with_edits and rng.random() < 0.15:
        tally.run("edit", lambda: _learn_an_edit(client, folder, 5), "ok")
    if with_edits and rng.random() < 0.1:
        tally.run("refine", lambda: (call(client, "/apply_vectors", preset, "1.0", 0.5), call(
            client, "/refine", 10, 0.5)), "ok")

