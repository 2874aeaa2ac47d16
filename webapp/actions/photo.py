"""Section 1 · photo alignment: mark the eyes and mouth (or a box) on the upload; the export pastes the edit back.

The user clicks on a preview of the photo (a large photo is shown smaller); marks are kept in photo
pixels. Three points (or two box corners) align the photo to the model's framing, and "Embed photo" then
embeds that crop instead of the centre square. Several faces in one photo: the user marks the one to edit.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from editgan_core.photos import PhotoError
from editgan_core.photos.decode import decode_photo
from editgan_core.photos.export import encode_like, suffix
from editgan_core.photos.framing import LANDMARKS
from editgan_core.pipeline import EditGANPipeline, InputError, Render, prepare_image
from webapp.actions.base import StudioBase
from webapp.photo_state import BOX, POINTS, PhotoState
from webapp.session import Session, Step

PREVIEW_SIDE = 800  # longest side of the picture the user clicks on
BEFORE_AFTER_SIDE = 1024  # longest side of each half of the before/after download
MARK_COLOURS = ((255, 60, 60), (60, 140, 255), (40, 200, 90))  # left eye, right eye, mouth (box corners: first two)
NAMES = {POINTS: ("left eye (on the image's left)", "right eye", "mouth (its centre)"),
         BOX: ("one corner of the box", "the opposite corner")}


@dataclass
class PhotoView:
    """What the marking panel shows: the preview with the marks, a line of guidance, the crop (if aligned)."""

    preview: np.ndarray | None
    status: str
    crop: np.ndarray | None


def file_digest(image: Any) -> str:
    """Content digest of an uploaded file (the same photo reaches the page and the API under other paths)."""
    try:
        return hashlib.sha256(Path(image).read_bytes()).hexdigest() if isinstance(image, str | Path) else ""
    except OSError:
        return ""


class PhotoActions(StudioBase):
    def _modes(self, pipe: EditGANPipeline) -> tuple[str, ...]:
        return (POINTS, BOX) if pipe.bundle.framing.uses_landmarks else (BOX,)

    def load_photo(self, session: Session, image: Any) -> PhotoView:
        """A new upload (or none): decode it at full size for marking; marks of the previous photo go."""
        state, pipe = session.photo, self.pipeline(session)
        state.clear()
        if image is None:
            state.photo, state.digest = None, ""
            return self.photo_view(session)
        try:
            state.photo = decode_photo(image, pipe.bundle.background)
        except PhotoError as exc:
            state.photo = None
            raise InputError(str(exc)) from exc
        state.digest = file_digest(image)
        state.preview_scale = min(1.0, PREVIEW_SIDE / max(state.photo.size))
        state.mode = state.mode if state.mode in self._modes(pipe) else self._modes(pipe)[0]
        return self.photo_view(session)

    def set_mark_mode(self, session: Session, mode: str) -> PhotoView:
        pipe = self.pipeline(session)
        if mode not in self._modes(pipe):
            raise InputError(f"this model is framed by a box: mark it with '{BOX}'")
        session.photo.mode = mode
        session.photo.clear()
        return self.photo_view(session)

    def clear_marks(self, session: Session) -> PhotoView:
        session.photo.clear()
        return self.photo_view(session)

    def mark(self, session: Session, x: float, y: float) -> PhotoView:
        """A click on preview pixel (x, y): the next mark; after the last one the photo is aligned."""
        state = session.photo
        if state.photo is None:
            raise InputError("upload a photo first")
        if len(state.marks) >= state.needed:  # a click after a complete set starts a new one
            state.clear()
        state.marks.append(((float(x) + 0.5) / state.preview_scale, (float(y) + 0.5) / state.preview_scale))
        if len(state.marks) == state.needed:
            self._align(session)
        return self.photo_view(session)

    def set_marks(self, session: Session, image: Any, marks: dict[str, Any]) -> PhotoView:
        """The API's way: load ``image`` and align it from ``{"left_eye": [x, y], "right_eye": ..., "mouth": ...}``
        or ``{"box": [x0, y0, x1, y1]}`` in photo pixels (select events cannot be sent by an API client)."""
        self.load_photo(session, image)
        state = session.photo
        if not isinstance(marks, dict):
            raise InputError("marks must be an object with left_eye, right_eye and mouth, or box")
        try:
            if "box" in marks:
                x0, y0, x1, y1 = (float(v) for v in marks["box"])
                state.mode, state.marks = BOX, [(x0, y0), (x1, y1)]
            else:
                state.mode, state.marks = POINTS, [(float(marks[n][0]), float(marks[n][1])) for n in LANDMARKS]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"marks must give left_eye, right_eye and mouth as [x, y], or box: {exc}") from None
        self._align(session)
        return self.photo_view(session)

    def _align(self, session: Session) -> None:
        state, pipe = session.photo, self.pipeline(session)
        marks = state.marks
        if state.mode == POINTS:
            aligned = pipe.align(state.photo, points=dict(zip(LANDMARKS, marks, strict=True)))
        else:
            aligned = pipe.align(state.photo, box=(*marks[0], *marks[1]))
        state.aligned, state.embedded = aligned, None

    def photo_view(self, session: Session) -> PhotoView:
        state = session.photo
        if state.photo is None:
            return PhotoView(None, "Upload a photo to align it to the model's framing.", None)
        names = NAMES[state.mode]
        if state.aligned is not None:
            status = ("**Aligned.** The crop on the right is what the model sees; *Embed photo* uses it, and the "
                      "export pastes the edit back into the full photo. Click again to mark anew.")
        else:
            step = len(state.marks)
            status = (f"Click the **{names[step]}** ({step + 1} of {len(names)}). Several faces: mark the one to "
                      "edit. Without marks, *Embed photo* takes the photo's centre square.")
        return PhotoView(self._preview(state), status, state.aligned.crop if state.aligned else None)

    def _preview(self, state: PhotoState) -> np.ndarray:
        w, h = state.photo.size
        s = state.preview_scale
        size = (max(1, round(w * s)), max(1, round(h * s)))
        preview = cv2.resize(state.photo.pixels, size, interpolation=cv2.INTER_AREA) if s < 1 else \
            state.photo.pixels.copy()
        radius = max(4, round(max(size) / 120))
        if state.aligned is not None:
            quad = np.rint(state.aligned.alignment.quad() * s).astype(np.int32)
            cv2.polylines(preview, [quad], True, (255, 220, 0), max(1, radius // 3), cv2.LINE_AA)
        for i, (x, y) in enumerate(state.marks):
            centre = (round(x * s), round(y * s))
            cv2.circle(preview, centre, radius, MARK_COLOURS[i], -1, cv2.LINE_AA)
            cv2.circle(preview, centre, radius, (255, 255, 255), max(1, radius // 4), cv2.LINE_AA)
        return preview

    # -- embedding and export ------------------------------------------------------------------
    def embed_pixels(self, session: Session, image: Any, pipe: EditGANPipeline) -> np.ndarray:
        """What ``embed`` puts into W+: the aligned crop of this photo if it was marked, else its centre square."""
        state = session.photo
        if state.aligned is not None and state.digest and file_digest(image) == state.digest:
            return state.aligned.crop
        return prepare_image(image, pipe.resolution, pipe.bundle.background)

    def remember_embed(self, session: Session, pixels: np.ndarray, step: Step) -> None:
        """Note the embed step made from the aligned crop: edits that start from it can be pasted back."""
        state = session.photo
        if state.aligned is not None and pixels is state.aligned.crop:
            state.embedded = step


def photo_exports(pipe: EditGANPipeline, session: Session, current: Step, folder: Path, stem: str) -> list[Path]:
    """For an edit of an aligned photo: the full photo with the edit (its format and size), the aligned crop, and
    the photo before/after side by side. Nothing for a sampled face or a centre-square embedding."""
    state = session.photo
    if state.embedded is None or state.aligned is None or session.history.origin() is not state.embedded:
        return []
    origin = state.embedded
    pasted = pipe.paste_back(state.aligned, Render(origin.image, origin.labels), Render(current.image, current.labels))
    fmt = state.aligned.photo.format
    files = {f"{stem}-photo{suffix(fmt)}": encode_like(pasted.image, fmt),
             f"{stem}-aligned-crop.png": encode_like(state.aligned.crop, "PNG"),
             f"{stem}-before-after.png": encode_like(before_after(state.aligned.photo.pixels, pasted.image), "PNG")}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def before_after(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The two photos side by side, each at most ``BEFORE_AFTER_SIDE`` on its longest side."""
    h, w = before.shape[:2]
    s = min(1.0, BEFORE_AFTER_SIDE / max(h, w))
    size = (max(1, math.floor(w * s)), max(1, math.floor(h * s)))
    halves = [cv2.resize(x, size, interpolation=cv2.INTER_AREA) if s < 1 else x for x in (before, after)]
    gap = np.full((size[1], max(4, size[0] // 100), 3), 255, np.uint8)
    return np.concatenate([halves[0], gap, halves[1]], axis=1)
