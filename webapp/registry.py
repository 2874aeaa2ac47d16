"""Models loaded once per bundle for the whole server, shared by every session.

Created when the app is built (never a module-level global), so tests and the Space each own one.
Loading is lazy and locked: the first session that needs a bundle pays for it, once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from editgan_core.bundle import Bundle, BundleError
from editgan_core.pipeline import EditGANPipeline
from webapp.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)


class ModelRegistry:
    """Bundle id -> manifest and (once loaded) pipeline; bundles that fail to load are listed in ``problems``."""

    def __init__(self, bundle_paths: Sequence[str | Path], device: str | None = None) -> None:
        self.device = device
        self.bundles: dict[str, Bundle] = {}
        self.problems: list[str] = []
        for path in bundle_paths:
            try:
                bundle = Bundle.load(path)
            except BundleError as exc:
                self.problems.append(str(exc))
                log.warning("skipping bundle %s: %s", path, exc)
                continue
            self.bundles.setdefault(bundle.id, bundle)
        self._pipelines: dict[str, EditGANPipeline] = {}
        self._lock = threading.Lock()
        self.thumbnails = ThumbnailCache()

    @property
    def ids(self) -> list[str]:
        return list(self.bundles)

    @property
    def default_id(self) -> str | None:
        return next(iter(self.bundles), None)

    def choices(self) -> list[tuple[str, str]]:
        """(label, id) pairs for a dropdown."""
        return [(f"{b.title} ({b.resolution} px)", b.id) for b in self.bundles.values()]

    def bundle(self, bundle_id: str) -> Bundle:
        try:
            return self.bundles[bundle_id]
        except KeyError:
            raise BundleError(f"unknown model '{bundle_id}'; available: {', '.join(self.ids) or 'none'}") from None

    def get(self, bundle_id: str) -> EditGANPipeline:
        """The bundle's pipeline, loading it on first use."""
        with self._lock:
            pipe = self._pipelines.get(bundle_id)
            if pipe is None:
                bundle = self.bundle(bundle_id)
                log.info("loading model bundle %s from %s", bundle_id, bundle.root)
                pipe = EditGANPipeline.from_pretrained(bundle.root, device=self.device)
                self._pipelines[bundle_id] = pipe
            return pipe
