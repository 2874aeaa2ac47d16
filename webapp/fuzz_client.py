"""What the fuzz and soak command (``webapp.fuzz``) needs to talk to a running studio and judge its answers.

Calls go through ``gradio_client`` (one client = one browser session) and, for what a client library
would never send (server paths, NaN, misfit inputs), as raw queue requests. Every answer is sorted
into one outcome; the server's memory is read from ``/proc`` (or psutil when installed).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from gradio_client import Client
from gradio_client.exceptions import AppError

OK, REFUSED, BARE, FALLBACK, LEAKED, CRASH, WRONG = (
    "ok", "specific refusal", "bare error", "catch-all fallback", "leaked path or type", "crash or hang",
    "silent wrong result")
OUTCOMES = (OK, REFUSED, BARE, FALLBACK, LEAKED, CRASH, WRONG)
BAD = (BARE, FALLBACK, LEAKED, CRASH, WRONG)
FALLBACK_TEXT = "Something went wrong on the server"
GRADIO_BARE = ("has not enabled verbose error reporting", "Error raised.")
# a server path or a Python type name in a message tells the user about the server's inside, not their input
LEAK = re.compile(r"(/tmp/|/work/|/root/|/home/|/usr/|site-packages|Traceback|\b[A-Z][A-Za-z]*(Error|Exception)\b)")
CALL_TIMEOUT_S = 180.0


class Refused(Exception):
    """An HTTP-level refusal (status and text), raised by the raw calls."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status, self.text = status, text


class WrongResult(Exception):
    """A call that succeeded where it should not have, or whose result is wrong."""


def classify(exc: BaseException | None, expect: str) -> tuple[str, str]:
    """(outcome, message) of one call; ``expect`` is "ok", "refuse" or "either"."""
    if exc is None:
        return (WRONG, "accepted, but should have been refused") if expect == "refuse" else (OK, "")
    if isinstance(exc, WrongResult):
        return WRONG, str(exc)
    if isinstance(exc, Refused):
        if exc.status >= 500 or not exc.text.strip():
            return BARE, str(exc)
        return (LEAKED, exc.text) if LEAK.search(exc.text) else (REFUSED, exc.text)
    if isinstance(exc, AppError):
        message = exc.message if isinstance(getattr(exc, "message", None), str) else ""
        message = message or str(exc)
        if not message or message.strip() in ("Error", "None") or any(b in message for b in GRADIO_BARE):
            return BARE, message
        if FALLBACK_TEXT in message:
            return FALLBACK, message
        if LEAK.search(message):
            return LEAKED, message
        return (WRONG, f"refused a valid call: {message}") if expect == "ok" else (REFUSED, message)
    return CRASH, f"{type(exc).__name__}: {exc}"[:300]


def call(client: Client, api_name: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
    """One named call, with a time limit (a hang counts as a crash)."""
    return client.submit(*args, api_name=api_name).result(timeout=timeout)


def file_data(path: str, orig_name: str | None = None) -> dict[str, Any]:
    """A file reference as the page sends it, for raw calls (nothing is uploaded)."""
    return {"path": path, "orig_name": orig_name, "meta": {"_type": "gradio.FileData"}}


def raw_call(client: Client, api_name: str, data: list[Any] | str, timeout: float = 60.0) -> Any:
    """A named event called with ``data`` exactly as given (``None`` filled in for the session state),
    through the queue as the page does; returns the output data or raises ``AppError``/``Refused``."""
    fn_index = client._infer_fn_index(api_name, None)
    dep = client.config["dependencies"][fn_index]
    kinds = {c["id"]: c.get("type") for c in client.config["components"]}
    session = uuid.uuid4().hex[:11]
    base = client.src.rstrip("/") + "/gradio_api"
    if isinstance(data, str):  # the data array as JSON text, sent verbatim (state slots included)
        body = f'{{"data": {data}, "fn_index": {fn_index}, "session_hash": "{session}"}}'
    else:
        it = iter(data)
        full = [None if kinds.get(i) == "state" else next(it, None) for i in dep["inputs"]]
        body = json.dumps({"data": full, "fn_index": fn_index, "session_hash": session, "event_data": None,
                           "trigger_id": None}, allow_nan=True)
    with httpx.Client(timeout=timeout) as http:
        joined = http.post(f"{base}/queue/join", content=body, headers={"content-type": "application/json"})
        if joined.status_code != 200:
            raise Refused(joined.status_code, joined.text[:300])
        with http.stream("GET", f"{base}/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    out = msg.get("output") or {}
                    if not msg.get("success", False):
                        raise AppError(out.get("error"))
                    return out.get("data")
    raise Refused(599, "the event stream ended without a result")


def post_files(base_url: str, count: int, size: int = 16) -> None:
    """POST ``count`` small files in one upload request (what a page never does)."""
    files = [("files", (f"f{i}.png", b"\x89PNG" + os.urandom(size), "image/png")) for i in range(count)]
    response = httpx.post(base_url.rstrip("/") + "/gradio_api/upload", files=files, timeout=60)
    if response.status_code != 200:
        raise Refused(response.status_code, response.text[:300])


def post_body(base_url: str, nbytes: int) -> None:
    """POST a JSON body of ``nbytes`` to the queue (a page's event data is a few kB)."""
    body = b'{"data": ["' + b"x" * nbytes + b'"], "fn_index": 0, "session_hash": "fuzzbody"}'
    response = httpx.post(base_url.rstrip("/") + "/gradio_api/queue/join", content=body,
                          headers={"content-type": "application/json"}, timeout=60)
    if response.status_code != 200:
        raise Refused(response.status_code, response.text[:300])


def download(client: Client, value: Any) -> bytes:
    """The bytes of a file output (a dict with a url, as returned with ``download_files=False``)."""
    url = value.get("url") if isinstance(value, dict) else None
    if not url:
        raise WrongResult(f"expected a file, got {str(value)[:80]}")
    if url.startswith("/"):
        url = client.src.rstrip("/") + url
    response = httpx.get(url, timeout=60)
    response.raise_for_status()
    return response.content


# ----------------------------------------------------------------------------------------------- memory


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB (psutil if installed, else /proc); None if unknown."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        pass
    except Exception:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class MemoryLog:
    """The server's RSS sampled every ``every_s`` seconds in a thread, with times from its start."""

    pid: int | None
    every_s: float = 0.5
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _start: float = field(default_factory=time.monotonic)

    def start(self) -> MemoryLog:
        if self.pid is not None:
            threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append((time.monotonic() - self._start, value))
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()

    def now(self) -> float | None:
        return rss_mb(self.pid) if self.pid is not None else None

    def peak(self) -> float | None:
        return max((v for _, v in self.samples), default=None)


@dataclass
class Tally:
    """Outcomes by name, with one example message each, and latencies by operation (thread-safe)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    examples: dict[str, list[str]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str, outcome: str, message: str, seconds: float | None = None) -> None:
        with self.lock:
            self.counts[outcome] += 1
            if outcome != OK:
                self.examples.setdefault(outcome, [])
                if len(self.examples[outcome]) < 100:
                    self.examples[outcome].append(f"{name}: {message[:160]}")
            if seconds is not None:
                self.latencies.setdefault(name, []).append(seconds)

    def run(self, name: str, fn: Callable[[], Any], expect: str) -> Any:
        """Run one call, sort its outcome, and time it."""
        start = time.monotonic()
        result, error = None, None
        try:
            result = fn()
        except Exception as exc:
            error = exc
        outcome, message = classify(error, expect)
        self.record(name, outcome, message, time.monotonic() - start)
        return result if error is None else None

    def bad(self) -> int:
        return sum(self.counts[o] for o in BAD)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]
