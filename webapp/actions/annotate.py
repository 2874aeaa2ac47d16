"""Section 7 · annotate: label a set of the model's images and train its segmentation branch from them.

The set lives in the bundle's annotation folder (``editgan_core.annotation.store``), so it is shared
by every page and survives restarts; what one page is painting right now (the open image, its label
map so far, the suggested regions and the click undo stack) is kept in the session. Painting with the
brush arrives as an ``gr.ImageEditor`` value and is merged into the label map before every other
change, so strokes, one-click regions and fills can be mixed freely.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from editgan_core.annotation import archive
from editgan_core.annotation.sources import check_samples, keep_photo, keep_samples
from editgan_core.annotation.store import AnnotationError, AnnotationStore
from editgan_core.annotation.suggest import DEFAULT_REGIONS, assign_region, fill_connected
from editgan_core.annotation.training import (
    CrossValidation,
    TrainReport,
    TrainSettings,
    check_installable,
    install_segmenter,
)
from editgan_core.defaults import MAX_STEPS
from editgan_core.models.segmenter import PixelEnsemble
from editgan_core.pipeline import EditGANPipeline, prepare_image
from webapp import gpu_tasks
from webapp import labels as lab
from webapp.actions.base import StudioBase, whole_number_in
from webapp.outcomes import Notice, Progress
from webapp.session import Session

STATE_KEY = "annotate"  # the session's ui_cache entry holding ``AnnotateState``
MAX_PHOTOS_AT_ONCE = 32
UNDO_LIMIT = 50
REGION_MODE, FILL_MODE = "assign the suggested region", "fill the connected area"
THUMB_SIDE = 96


@dataclass
class AnnotateState:
    """The image open in this page: its label map so far, suggested regions, click undo stack."""

    name: str | None = None
    labels: np.ndarray | None = None
    regions: np.ndarray | None = None
    suggestion: str = ""
    undo: list[np.ndarray] = field(default_factory=list)


@dataclass
class AnnotateView:
    """What the section shows."""

    progress: str
    gallery: list[tuple[np.ndarray, str]]
    name: str | None
    picture: np.ndarray | None  # the image with the label map and region borders, to click on
    editor: dict[str, object] | None
    status: str
    can_undo: bool = False


@dataclass
class TrainOutcome:
    status: str
    table: list[list[Any]]  # class, IoU on left-out images, labelled pixels


def cv_table(cv: CrossValidation | None) -> list[list[Any]]:
    if cv is None:
        return []
    weak = set(cv.weakest())
    return [[name, "not labelled" if iou is None else round(iou, 3), cv.labelled_pixels[name],
             "label more" if name in weak or iou is None else ""] for name, iou in cv.per_class.items()]


class AnnotateActions(StudioBase):
    def annotation_store(self, session: Session) -> AnnotationStore:
        return AnnotationStore.for_bundle(self.pipeline(session).bundle)

    def _state(self, session: Session) -> AnnotateState:
        state = session.ui_cache.get(STATE_KEY)
        if not isinstance(state, AnnotateState):
            state = session.ui_cache[STATE_KEY] = AnnotateState()
        return state

    # -- the view ------------------------------------------------------------------------------
    def _picture(self, pipe: EditGANPipeline, image: np.ndarray, state: AnnotateState) -> np.ndarray:
        factor = self.editor_factor(pipe)
        mixed = lab.overlay(image, state.labels, pipe.bundle.palette, 0.45)
        big = lab.upscale(mixed, factor)
        if state.regions is not None:
            regions = lab.upscale(state.regions.astype(np.int32), factor)
            edge = np.zeros(regions.shape, bool)
            edge[:-1] |= regions[:-1] != regions[1:]
            edge[:, :-1] |= regions[:, :-1] != regions[:, 1:]
            big[edge] = (255, 255, 255)
        return big

    def _gallery(self, store: AnnotationStore) -> list[tuple[np.ndarray, str]]:
        items = []
        for entry in store.entries():
            image = store.image(entry.name)
            labels = store.labels(entry.name)
            if labels is not None:
                image = lab.overlay(image, labels, store.bundle.palette, 0.5)
            image = cv2.resize(image, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_NEAREST)
            items.append((image, f"{entry.name} {'✓' if entry.done else '…'}"))
        return items

    def annotate_view(self, session: Session, status: str = "") -> AnnotateView:
        pipe = self.pipeline(session)
        store = self.annotation_store(session)
        state = self._state(session)
        if state.name is not None and state.name not in store.names():
            session.ui_cache[STATE_KEY] = state = AnnotateState()
        picture = editor = None
        if state.name is not None:
            picture = self._picture(pipe, store.image(state.name), state)
            editor = lab.editor_value(state.labels, pipe.bundle.palette, self.editor_factor(pipe))
        progress = store.progress()
        text = f"**{progress}**" + (f" · painting **{state.name}** ({state.suggestion})" if state.name else "")
        return AnnotateView(text, self._gallery(store), state.name, picture, editor, status, bool(state.undo))

    # -- adding images -------------------------------------------------------------------------
    def annotate_draw(self, session: Session, count: int = 16, seed: int = 0, truncation: float = 0.7) -> AnnotateView:
        """Add ``count`` generated samples (their latents are exact: no embedding) and open the first."""
        seeds, truncation = check_samples(count, seed, truncation)
        drawn = gpu_tasks.samples_task(self.gpu_models, session.bundle_id, seeds, truncation)
        added = keep_samples(self.annotation_store(session), seeds, truncation, drawn)
        self.annotate_open(session, added[0].name)
        return self.annotate_view(session, f"Added {len(added)} samples (seeds {seeds[0]}–{seeds[-1]}).")

    def annotate_add_photos(self, session: Session, files: Sequence[str | Path] | None,
                            steps: int | None = None) -> Iterator[Progress | Notice | AnnotateView]:
        """Embed photos one by one (a GPU task each, ``Progress`` per step) and add them with their latents."""
        files = list(files or [])
        if not files:
            raise AnnotationError("choose one or more photos to add first")
        if len(files) > MAX_PHOTOS_AT_ONCE:
            raise AnnotationError(f"add at most {MAX_PHOTOS_AT_ONCE} photos at once")
        pipe, store = self.pipeline(session), self.annotation_store(session)
        steps = whole_number_in(pipe.defaults.embed_steps if steps is None else steps, "the embedding steps", 0,
                                MAX_STEPS)
        stop = session.new_job()
        job = gpu_tasks.track(stop)
        added = []
        for path in files:
            pixels = prepare_image(path, pipe.resolution)
            embedded = yield from self._gpu_result(gpu_tasks.embed_task(
                self.gpu_models, session.bundle_id, steps, pixels, job, float("inf")))
            added.append(keep_photo(store, pixels, embedded.result, Path(path).name))
            if stop.is_set():
                yield Notice("stopped: the photos not yet embedded were not added")
                break
        self.annotate_open(session, added[0].name)
        psnr = ", ".join(f"{e.meta['source']['embed_psnr']:.1f}" for e in added)
        yield self.annotate_view(session, f"Added {len(added)} photo(s), embedded at {psnr} dB PSNR.")

    # -- painting ------------------------------------------------------------------------------
    def annotate_open(self, session: Session, name: str, regions: int = DEFAULT_REGIONS) -> AnnotateView:
        """Open an image: its saved label map, else the suggestion (the segmenter's map, or blank), plus regions."""
        store = self.annotation_store(session)
        if name not in store.names():
            raise AnnotationError(f"'{name}' is not in this model's annotation set")
        found = gpu_tasks.suggest_task(self.gpu_models, session.bundle_id, store.latent(name), int(regions))
        saved = store.labels(name)
        if saved is not None:
            labels, how = saved, "saved label map"
        elif found.labels is not None:
            labels, how = found.labels, "starting from the segmentation branch's prediction"
        else:
            labels, how = np.zeros(found.regions.shape, np.uint8), "blank: click regions to name them"
        session.ui_cache[STATE_KEY] = AnnotateState(name, labels, found.regions, how)
        return self.annotate_view(session, f"Opened {name}: {how}.")

    def _open_state(self, session: Session) -> AnnotateState:
        state = self._state(session)
        if state.name is None:
            raise AnnotationError("open an image of the set first (draw samples, add photos or click one)")
        return state

    def _merge_strokes(self, session: Session, state: AnnotateState, value: Mapping[str, object] | None) -> int:
        """Brush strokes painted since the last change become part of the label map; returns the pixels changed."""
        if value is None:
            return 0
        painted = lab.read_painting(value, state.labels, self.pipeline(session).bundle.palette)
        if painted.changed_pixels:
            self._push_undo(state)
            state.labels = painted.labels
        return painted.changed_pixels

    @staticmethod
    def _push_undo(state: AnnotateState) -> None:
        state.undo = [*state.undo, state.labels.copy()][-UNDO_LIMIT:]

    def _class_id(self, session: Session, class_name: str) -> int:
        for c in self.pipeline(session).bundle.classes:
            if c.name == class_name:
                return c.id
        raise AnnotationError(f"choose a class first ('{class_name}' is not one of this model's)")

    def annotate_click(self, session: Session, value: Mapping[str, object] | None, x: int, y: int, class_name: str,
                       mode: str = REGION_MODE) -> AnnotateView:
        """One click on the picture: give the suggested region (or the connected area) under it the class."""
        state = self._open_state(session)
        self._merge_strokes(session, state, value)
        class_id = self._class_id(session, class_name)
        factor = self.editor_factor(self.pipeline(session))
        size = state.labels.shape[0]
        px, py = min(max(int(x) // factor, 0), size - 1), min(max(int(y) // factor, 0), size - 1)
        self._push_undo(state)
        if mode == FILL_MODE:
            state.labels = fill_connected(state.labels, py, px, class_id)
        else:
            state.labels = assign_region(state.labels, state.regions, py, px, class_id)
        changed = int((state.undo[-1] != state.labels).sum())
        return self.annotate_view(session, f"{changed} pixel(s) set to {class_name}.")

    def annotate_undo(self, session: Session) -> AnnotateView:
        state = self._open_state(session)
        if not state.undo:
            return self.annotate_view(session, "Nothing to undo.")
        state.labels, state.undo = state.undo[-1], state.undo[:-1]
        return self.annotate_view(session, "Undone.")

    def annotate_save(self, session: Session, value: Mapping[str, object] | None) -> AnnotateView:
        """Save the label map (brush strokes included); then open the next image still to paint."""
        state = self._open_state(session)
        brushed = self._merge_strokes(session, state, value)
        store = self.annotation_store(session)
        store.save_labels(state.name, state.labels)
        saved = state.name
        todo = [e.name for e in store.entries() if not e.done]
        if todo:
            self.annotate_open(session, todo[0])
        return self.annotate_view(session, f"Saved {saved} ({brushed} pixel(s) painted with the brush)."
                                  + (f" Next: {todo[0]}." if todo else " All done."))

    def annotate_labels(self, session: Session) -> np.ndarray | None:
        """The label map being painted (for API clients and tests)."""
        return self._state(session).labels

    def annotate_set_labels(self, session: Session, labels: np.ndarray) -> AnnotateView:
        """Replace the label map being painted by a whole array (what a painting amounts to)."""
        state = self._open_state(session)
        labels = self.pipeline(session).check_labels(labels).astype(np.uint8)
        self._push_undo(state)
        state.labels = labels
        return self.annotate_view(session, "Label map set.")

    def annotate_delete(self, session: Session) -> AnnotateView:
        state = self._open_state(session)
        self.annotation_store(session).remove(state.name)
        session.ui_cache[STATE_KEY] = AnnotateState()
        return self.annotate_view(session, f"Removed {state.name} from the set.")

    # -- files ---------------------------------------------------------------------------------
    def annotate_export(self, session: Session) -> Path:
        store = self.annotation_store(session)
        return archive.export_zip(store, self._export_dir(session) / f"{session.bundle_id}-annotations.zip")

    def annotate_import(self, session: Session, path: str | Path | None) -> AnnotateView:
        if not path:
            raise AnnotationError("choose an annotation zip to import first")
        added = archive.import_zip(self.annotation_store(session), Path(path))
        return self.annotate_view(session, f"Imported {len(added)} image(s), {sum(e.done for e in added)} labelled.")

    # -- training ------------------------------------------------------------------------------
    def annotate_train(self, session: Session,
                       settings: TrainSettings | None = None) -> Iterator[Progress | Notice | TrainOutcome]:
        """Train on the done entries, install the segmenter, then cross-validate (a GPU task each; ``Progress``
        per step, one count over both)."""
        pipe, store = self.pipeline(session), self.annotation_store(session)
        check_installable(pipe.bundle)
        settings = settings or TrainSettings()
        items = store.training_set()
        if len(items) < 2:
            raise AnnotationError(f"save at least 2 label maps first ({store.progress()})")
        _, latents, labels = zip(*items, strict=True)
        stop = session.new_job()
        task = (self.gpu_models, session.bundle_id, list(latents), list(labels), settings, gpu_tasks.track(stop))
        trained = yield from self._gpu_result(gpu_tasks.train_segmenter_task(*task))
        if trained is None:  # cancelled: the task's notice said so
            return
        ensemble = PixelEnsemble.from_state(trained.config, trained.state, "the trained segmenter")
        report = TrainReport(ensemble.requires_grad_(False), trained.annotations, trained.seconds)
        install_segmenter(pipe, report)
        if settings.cv_folds(len(labels)):
            validated = yield from self._gpu_result(gpu_tasks.validate_segmenter_task(*task))
            if validated is None:
                return
            report.cv, report.seconds = validated.cv, report.seconds + validated.seconds
        weak = ", ".join(report.cv.weakest()) if report.cv else ""
        status = (f"Trained on {report.annotations} images in {report.seconds:.0f} s and installed. "
                  + (f"Cross-validated mIoU {report.cv.miou:.2f} over {report.cv.folds} folds; label more of: "
                     f"{weak}." if report.cv else ""))
        yield TrainOutcome(status, cv_table(report.cv))
