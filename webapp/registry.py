"""Models loaded once per bundle for the whole server, shared by every session.

Created when the app is built (never a module-level global), so tests and the Space each own one.
Loading is lazy and locked: the first session that needs a bundle pays for it, once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from editgan_core.bundle import Bundle, BundleError
from editgan_core.pipeline import EditGANPipeline
from webapp.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)


class ModelRegistry:
    """Bundle id -> manifest and (once loaded) pipeline; bundles that fail to load are listed in ``problems``.

    ``scan`` lists the bundle folders to look in again on ``refresh`` (the app passes ``list_bundles``), so
    a bundle made with ``bundle create`` while the studio runs joins the model picker without a restart.
    """

    def __init__(self, bundle_paths: Sequence[str | Path], device: str | None = None,
                 scan: Callable[[], Iterable[Path]] | None = None) -> None:
        self.device = device
        self.scan = scan
        self.bundles: dict[str, Bundle] = {}
        self.problems: list[str] = []
        self._pipelines: dict[str, EditGANPipeline] = {}
        self._lock = threading.Lock()
        self.thumbnails = ThumbnailCache()
        self._add(bundle_paths)

    def _add(self, paths: Iterable[str | Path]) -> list[str]:
        """Open bundles and list those whose id is new (the first one found wins); returns their ids.

        The listing is replaced, never changed in place, so pages reading it meanwhile see the old or
        the new one whole.
        """
        bundles = dict(self.bundles)
        for path in paths:
            try:
                bundle = Bundle.load(path)
            except BundleError as exc:
                if str(exc) not in self.problems:
                    self.problems.append(str(exc))
                    log.warning("skipping bundle %s: %s", path, exc)
                continue
            bundles.setdefault(bundle.id, bundle)
        added = [k for k in bundles if k not in self.bundles]
        self.bundles = bundles
        return added

    def refresh(self) -> list[str]:
        """Look for bundles added since the app started; returns the ids of those now listed."""
        if self.scan is None:
            return []
        with self._lock:
            known = {b.root.resolve() for b in self.bundles.values()}
            return self._add(p for p in self.scan() if Path(p).resolve() not in known)

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
