"""Input components that check what the browser (or an API client) sends before anything is decoded.

Gradio reads uploaded pictures in the components' ``preprocess``, before the app's callback runs: a
file that is not a picture, or a 9000² PNG of 255 kB, is decoded (or fails with a bare "Error")
there. ``checked_photo`` and ``checked_editor`` give a component a ``preprocess`` that reads only the
picture's header first (Pillow opens lazily), refuses what is too large or not a picture with a
message naming the limit, and only then lets Gradio decode. They wrap instances rather than subclass:
Gradio writes a ``.pyi`` stub next to the module of every component subclass when it is imported.
"""

from __future__ import annotations

import types
from io import BytesIO
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData
from PIL import Image

from editgan_core.photos.limits import MAX_INPUT_PIXELS
from webapp.labels import MAX_PAINT_LAYERS, MAX_PAINT_SIDE

PHOTO_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO"}
MAX_DATA_URL_CHARS = 16 * 1024 * 1024  # a picture sent inline instead of uploaded (base64)


def picture_size(source: str | Path | bytes, what: str, formats: set[str], expected: str) -> tuple[int, int]:
    """Width and height from a picture's header, without decoding it; ``gr.Error`` naming ``what`` and the
    ``expected`` kinds otherwise."""
    try:
        with Image.open(BytesIO(source) if isinstance(source, bytes | bytearray) else source) as im:
            kind, size = im.format, im.size
    except Image.DecompressionBombError:
        raise gr.Error(f"{what} is larger than {MAX_INPUT_PIXELS // 1_000_000} MP", print_exception=False) from None
    except (OSError, ValueError, SyntaxError):  # the messages name the server's temp path
        raise gr.Error(f"{what} is not a picture that can be read ({expected})", print_exception=False) from None
    if kind not in formats:
        raise gr.Error(f"{what} is a {kind} file; use {expected}", print_exception=False)
    return size


def _photo_preprocess(self: gr.Image, payload: Any) -> str | None:
    if payload is None:
        return None
    url = getattr(payload, "url", None) or ""
    if url.startswith("data:"):
        if len(url) > MAX_DATA_URL_CHARS:
            raise gr.Error(f"the photo is over the limit of {MAX_DATA_URL_CHARS // 2**20} MB",
                           print_exception=False)
        return type(self).preprocess(self, payload)
    if not getattr(payload, "path", None):
        raise gr.Error("no photo arrived: upload it again", print_exception=False)
    if Path(payload.orig_name or payload.path).suffix.lower() == ".svg":
        raise gr.Error("SVG drawings cannot be embedded; upload a PNG, JPEG or WebP photo", print_exception=False)
    width, height = picture_size(payload.path, "the photo", PHOTO_FORMATS, "a PNG, JPEG or WebP picture")
    if width * height > MAX_INPUT_PIXELS:
        raise gr.Error(f"the photo is {width}x{height}; the limit is {MAX_INPUT_PIXELS // 1_000_000} MP",
                       print_exception=False)
    return str(payload.path)


def _editor_preprocess(self: gr.ImageEditor, payload: Any) -> Any:
    if payload is None:
        return None
    parts = [payload.background, *(payload.layers or []), payload.composite]
    if payload.id is not None:  # sent in pieces beforehand (large canvases): held as bytes
        cached = self.blob_storage.get(payload.id)
        if cached is not None:
            parts = [cached.background, *(cached.layers or []), cached.composite]
    if len(parts) > MAX_PAINT_LAYERS + 2:
        raise gr.Error(f"the painted label map has {len(parts) - 2} layers; the limit is {MAX_PAINT_LAYERS}",
                       print_exception=False)
    for part in parts:
        if part is None:
            continue
        source = part.path if isinstance(part, FileData) else bytes(part)
        width, height = picture_size(source, "the painted label map", {"PNG", "WEBP"}, "a PNG picture")
        if width > MAX_PAINT_SIDE or height > MAX_PAINT_SIDE:
            raise gr.Error(f"the painted label map is {width}x{height} pixels; the limit is "
                           f"{MAX_PAINT_SIDE}x{MAX_PAINT_SIDE}", print_exception=False)
    try:
        return type(self).preprocess(self, payload)
    except (OSError, ValueError, SyntaxError):  # decoding failed past the header (truncated data)
        raise gr.Error("the painted label map could not be read: its data is damaged or incomplete",
                       print_exception=False) from None


def checked_photo(component: gr.Image) -> gr.Image:
    """A ``gr.Image(type="filepath")`` whose upload is checked from its header and handed on undecoded."""
    component.preprocess = types.MethodType(_photo_preprocess, component)
    return component


def checked_editor(component: gr.ImageEditor) -> gr.ImageEditor:
    """A ``gr.ImageEditor`` whose background, layers and composite are checked (format, size) before decoding."""
    component.preprocess = types.MethodType(_editor_preprocess, component)
    return component
