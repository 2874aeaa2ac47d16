"""Hand freed memory back to the system, so the server's resident size follows what it really holds.

The C allocator (glibc's malloc) keeps freed blocks for reuse: after a burst of large requests (decoded
pictures, 2 MB strings) the process holds hundreds of MB that no Python object uses, per thread arena.
Two glibc settings fix that; no library offers them, so they are set here through ``ctypes``:
fewer arenas (threads share two, so freed space is found again) and a periodic ``malloc_trim``
(returns free pages at the top of each arena). Elsewhere (macOS, musl, Windows) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt parameter number in glibc's malloc.h
ARENAS = 2
TRIM_EVERY_S = 15.0

_started = threading.Event()


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 (present only in glibc)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def trim() -> bool:
    """Return free memory to the system now; False where the allocator cannot."""
    libc = _glibc()
    return bool(libc and libc.malloc_trim(0))


def keep_memory_returned(every_s: float = TRIM_EVERY_S) -> bool:
    """Limit malloc's arenas and trim every ``every_s`` seconds in a daemon thread (once per process)."""
    libc = _glibc()
    if libc is None or _started.is_set():
        return libc is not None
    _started.set()
    libc.mallopt(M_ARENA_MAX, ARENAS)

    def run() -> None:
        while True:
            time.sleep(every_s)
            libc.malloc_trim(0)

    threading.Thread(target=run, name="malloc-trim", daemon=True).start()
    log.debug("malloc: %d arenas, trimmed every %.0f s", ARENAS, every_s)
    return True
