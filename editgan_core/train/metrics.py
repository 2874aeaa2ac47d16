"""``metrics.jsonl`` for training runs: one JSON object per log interval, for plots and for comparing runs.

Each line holds the step, images seen (all workers), wall time, throughput over the interval and the mean
of every logged loss over the interval's steps (rank 0's values under DDP). A resumed run first drops the
lines written after the checkpoint it continues from, so the file never holds a step twice.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from editgan_core.utils import atomic_write

FILE = "metrics.jsonl"


class MetricsLog:
    """Collects per-step logs and appends their means every ``every`` steps (nothing when not ``enabled``)."""

    def __init__(self, path: Path, every: int, enabled: bool = True, resume_step: int = 0,
                 images_seen: int = 0) -> None:
        self.path, self.every, self.enabled = Path(path), max(1, every), enabled
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self._since = time.monotonic()
        self._images_before = images_seen
        if enabled:
            self._drop_after(resume_step)

    def _drop_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines() if line.strip() and _step(line) <= step]
        atomic_write(self.path, lambda p: p.write_text("".join(f"{line}\n" for line in kept)))

    def add(self, step: int, images_seen: int, logs: dict[str, float]) -> dict | None:
        """Record one step's logs; at the end of an interval write and return its line."""
        if not self.enabled:
            return None
        for key, value in logs.items():
            self._sums[key] += float(value)
            self._counts[key] += 1
        return self.write(step, images_seen) if step % self.every == 0 else None

    def write(self, step: int, images_seen: int) -> dict | None:
        """Write the line for the steps collected so far (e.g. at the end of training), if any."""
        if not self.enabled or not self._counts:
            return None
        now = time.monotonic()
        elapsed = max(now - self._since, 1e-9)
        line = {"step": step, "kimg": round(images_seen / 1000, 3), "images_seen": images_seen,
                "time": round(time.time(), 3), "interval_s": round(elapsed, 3),
                "img_per_s": round((images_seen - self._images_before) / elapsed, 2),
                **{k: self._sums[k] / self._counts[k] for k in sorted(self._sums)}}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        self._sums.clear()
        self._counts.clear()
        self._since, self._images_before = now, images_seen
        return line


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError, TypeError):
        return 0
