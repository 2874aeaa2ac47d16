"""Request limits that hold for every launcher, because the page's ``gr.Blocks`` carries them.

``launch(max_file_size=...)`` only binds when the app is started through our launcher; ``gradio app.py``,
a Space runner or ``mount_gradio_app`` pass their own (usually none). ``StudioBlocks`` keeps the
stricter of its own limit and any given, sets the cache lifetime, puts ``RequestLimits`` in front of
the server when it launches (body size, files per request; an app that mounts the page with
``gr.mount_gradio_app`` adds the middleware itself), and turns the failures Gradio meets before a callback runs
(a file reference outside the upload folder, an input that does not fit its component) into messages
that say what was wrong, not a bare "Error".
"""

from __future__ import annotations

import logging
import math
from typing import Any

import gradio as gr
from gradio.exceptions import InvalidPathError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webapp.errors import release

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # one uploaded file (a photo, a vector file, a painted map)
MAX_FILES_PER_REQUEST = 8  # the paint editor sends the most: background, its layer and the composite
MAX_BODY_BYTES = 4 * 1024 * 1024  # any request that is not an upload: event data is names, numbers and references
CACHE_LIFETIME = (900, 3600)  # every 15 min, delete cached uploads and renders older than an hour


class RequestRefused(HTTPException):
    """Raised while ``RequestLimits`` reads a request that is over a limit: the app's own exception handling
    answers it (413 with the reason), or the middleware does if nothing inside did."""

    def __init__(self, reason: str) -> None:
        super().__init__(413, reason)


class RequestLimits:
    """ASGI middleware: refuse (HTTP 413, the limit in the text) bodies over the size limits and multipart
    requests with more than ``max_files`` parts, counting while the body streams in (nothing is buffered)."""

    def __init__(self, app: ASGIApp, max_files: int = MAX_FILES_PER_REQUEST, max_upload: int = MAX_UPLOAD_BYTES,
                 max_body: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_files, self.max_upload, self.max_body = app, max_files, max_upload, max_body

    def _limits(self, scope: Scope) -> tuple[int, bytes | None]:
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"")
        if not ctype.startswith(b"multipart/form-data"):
            return self.max_body, None
        boundary = next((p.split(b"=", 1)[1].strip(b'"') for p in ctype.split(b";") if p.strip().startswith(
            b"boundary=")), None)
        return self.max_files * self.max_upload + 64 * 1024, b"--" + boundary if boundary else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit, boundary = self._limits(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, f"the request is over the limit of {limit // 2**20} MB")
            return
        seen = {"bytes": 0, "parts": 0, "tail": b"", "why": "", "started": False}

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                seen["bytes"] += len(body)
                if boundary:
                    window = seen["tail"] + body
                    seen["parts"] += window.count(boundary) - seen["tail"].count(boundary)
                    seen["tail"] = window[-len(boundary):]
                if seen["bytes"] > limit:
                    seen["why"] = f"the request is over the limit of {limit // 2**20} MB"
                elif seen["parts"] > self.max_files + 1:  # n parts have n + 1 boundary lines
                    seen["why"] = f"at most {self.max_files} files can be sent in one request"
                if seen["why"]:
                    raise RequestRefused(seen["why"])
            return message

        async def tracked(message: Message) -> None:
            seen["started"] = seen["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except RequestRefused:
            log.info("refused a request to %s: %s", scope.get("path"), seen["why"])
            if not seen["started"]:
                await _refuse(send, seen["why"])


async def _refuse(send: Send, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class StudioBlocks(gr.Blocks):
    """``gr.Blocks`` with the studio's request limits and cache lifetime built in (see the module docstring)."""

    def __init__(self, *args: Any, delete_cache: tuple[int, int] | None = CACHE_LIFETIME, **kwargs: Any) -> None:
        self._max_file_size: float = MAX_UPLOAD_BYTES
        super().__init__(*args, delete_cache=delete_cache, **kwargs)

    @property
    def max_file_size(self) -> int:
        return int(self._max_file_size)

    @max_file_size.setter
    def max_file_size(self, value: int | None) -> None:
        """``launch`` sets this from its own argument (None: no limit); the stricter limit stays."""
        self._max_file_size = min(MAX_UPLOAD_BYTES, math.inf if value is None else value)

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(RequestLimits)]
        return super().launch(*args, app_kwargs=app_kwargs, **kwargs)

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False) -> Any:
        error = None
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as exc:
            error = _input_error(exc, getattr(block_fn, "name", "an event"))
            release(exc)
        try:
            raise error  # outside the except block: no reference back to the failure and its frames
        finally:
            del error, inputs


def _input_error(exc: Exception, where: str) -> gr.Error:
    if isinstance(exc, InvalidPathError):
        return gr.Error("a file in this request was not uploaded to this page (files on the server cannot be "
                        "referenced); upload it again", print_exception=False)
    log.info("refused the inputs of %s: %s", where, exc)  # a value that does not fit its component
    return gr.Error("the request's inputs do not fit this page's fields (a number, a text, a file reference "
                    "each); reload the page or check the API call", print_exception=False)
