"""The server-side limits that every launcher gets (``webapp.limits``), the upload checks that run before
Gradio decodes anything (``webapp.components``), and the allocator tuning (``webapp.allocator``)."""

from __future__ import annotations

import asyncio
import io

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio.data_classes import FileData
from gradio.exceptions import InvalidPathError
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from webapp import allocator
from webapp.components import checked_editor, checked_photo
from webapp.errors import FALLBACK
from webapp.labels import MAX_PAINT_SIDE
from webapp.limits import CACHE_LIFETIME, MAX_UPLOAD_BYTES, RequestLimits, StudioBlocks, _input_error


def test_the_blocks_keep_their_limits_whatever_the_launcher_passes():
    with StudioBlocks() as demo:
        gr.Markdown("x")
    assert demo.delete_cache == CACHE_LIFETIME and demo.max_file_size == MAX_UPLOAD_BYTES
    demo.max_file_size = None  # what launch() sets when it is given no limit (gradio app.py, a Space runner)
    assert demo.max_file_size == MAX_UPLOAD_BYTES
    demo.max_file_size = 1000  # a stricter one is kept
    assert demo.max_file_size == 1000


def test_refused_server_files_and_misfit_inputs_get_messages_without_paths():
    moved = _input_error(InvalidPathError("Cannot move /etc/passwd to the gradio cache dir because ..."), "x")
    misfit = _input_error(ValueError("could not convert string to float: 'many'"), "x")
    for error in (moved, misfit):
        assert isinstance(error, gr.Error) and error.message and "/" not in error.message.replace("/page", "")
        assert "Error" not in error.message and FALLBACK[:20] not in error.message
    assert "not uploaded to this page" in moved.message


def _echo_app() -> RequestLimits:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"read {len(await request.body())}")

    return RequestLimits(Starlette(routes=[Route("/upload", echo, methods=["POST"])]), max_files=3,
                         max_upload=1000, max_body=2000)


def _post(**kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_echo_app()), base_url="http://t") as http:
            return await http.post("/upload", **kwargs)

    return asyncio.run(go())


def test_requests_over_the_file_count_or_size_are_refused_naming_the_limit():
    files = [("files", (f"f{i}.bin", b"x" * 10)) for i in range(3)]
    assert _post(files=files).status_code == 200
    many = _post(files=[("files", (f"f{i}.bin", b"x" * 10)) for i in range(300)])
    assert many.status_code == 413 and "at most 3 files can be sent in one request" in many.text
    big = _post(content=b"x" * 5000, headers={"content-type": "application/json"})
    assert big.status_code == 413 and "over the limit" in big.text

    async def chunks():  # no declared length: counted while it streams
        for _ in range(10):
            yield b"x" * 500

    streamed = _post(content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def _file(tmp_path, name: str, data: bytes) -> FileData:
    path = tmp_path / name
    path.write_bytes(data)
    return FileData(path=str(path), orig_name=name)


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_photo_uploads_are_checked_from_their_header_and_passed_on_undecoded(tmp_path):
    photo = checked_photo(gr.Image(type="filepath", image_mode=None))
    ok = _file(tmp_path, "ok.png", _png(np.zeros((8, 8, 3), np.uint8)))
    assert photo.preprocess(ok) == ok.path
    cases = {"junk.png": (b"\x00" * 100, "the photo is not a picture that can be read"),
             "x.svg": (b"<svg/>", "SVG drawings cannot be embedded"),
             "huge.png": (_png(np.zeros((9000, 9000), np.uint8)), "the photo is 9000x9000; the limit is 64 MP")}
    for name, (data, message) in cases.items():
        with pytest.raises(gr.Error, match=message) as caught:
            photo.preprocess(_file(tmp_path, name, data))
        assert str(tmp_path) not in caught.value.message


def test_painted_maps_are_checked_before_gradio_decodes_them(tmp_path):
    editor = checked_editor(gr.ImageEditor(type="numpy", image_mode="RGBA"))
    small = _file(tmp_path, "small.png", _png(np.zeros((16, 16, 4), np.uint8)))
    value = editor.preprocess(editor.data_model(background=small, layers=[small], composite=small))
    assert value["composite"].shape == (16, 16, 4)
    side = MAX_PAINT_SIDE + 1
    big = _file(tmp_path, "big.png", _png(np.zeros((8, side), np.uint8)))
    cases = [(big, f"8 pixels; the limit is {MAX_PAINT_SIDE}"),
             (_file(tmp_path, "bad.png", b"\x89PNG" + b"\x00" * 50), "is not a picture that can be read \\(a PNG"),
             (small, "has 5 layers; the limit is 4")]
    for part, message in cases:
        layers = [part] * 5 if part is small else [part]
        with pytest.raises(gr.Error, match=message):
            editor.preprocess(editor.data_model(background=None, layers=layers, composite=None))


def test_the_allocator_is_tuned_once_and_trims_where_glibc_is_present():
    if allocator._glibc() is None:
        pytest.skip("not glibc: nothing to tune")
    assert allocator.keep_memory_returned() and allocator.keep_memory_returned()
    assert isinstance(allocator.trim(), bool)
