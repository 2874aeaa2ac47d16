"""A session's uploaded photo at full resolution, the marks the user clicked on it, and its alignment.

Kept apart from the history: the history holds latents and renders at the model's size, while this is
the photo the edit goes back into (``PhotoActions.photo_exports``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from editgan_core.photos.decode import Photo
from editgan_core.photos.workflow import AlignedPhoto

if TYPE_CHECKING:  # the session module holds a PhotoState: no import back at run time
    from webapp.session import Step

POINTS, BOX = "eyes and mouth (3 clicks)", "box (2 corners)"


@dataclass
class PhotoState:
    """The photo (None before an upload), its content digest, the marks (photo pixels) and what they give."""

    photo: Photo | None = None
    digest: str = ""
    preview_scale: float = 1.0  # preview pixels per photo pixel
    mode: str = POINTS
    marks: list[tuple[float, float]] = field(default_factory=list)
    aligned: AlignedPhoto | None = None
    embedded: Step | None = None  # the embed step made from ``aligned`` (the start of its edits)

    @property
    def needed(self) -> int:
        return 3 if self.mode == POINTS else 2

    def clear(self) -> None:
        self.marks, self.aligned, self.embedded = [], None, None
