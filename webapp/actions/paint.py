"""Section 3 · paint: what the user painted on the label map, read back as class ids."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from editgan_core.pipeline import InputError
from webapp import labels as lab
from webapp.actions.base import StudioBase
from webapp.outcomes import Notice
from webapp.session import Session


class PaintActions(StudioBase):
    def read_paint(self, session: Session, value: Mapping[str, object] | np.ndarray | None) -> lab.PaintResult:
        """The painted label map as class ids (snapped to the class colours)."""
        current = self._require_labelled(session)
        pipe = self.pipeline(session)
        if current.labels is None:
            raise InputError(f"model '{session.bundle_id}' has no segmentation branch, so there is nothing to paint")
        if value is None:
            raise InputError("paint on the label map first (step 3)")
        return lab.read_painting(value, current.labels, pipe.bundle.palette)

    def describe_paint(self, session: Session, paint: lab.PaintResult) -> str:
        """'37 pixels: skin → lips 30, skin → mouth_interior 7' — what the edit will be asked to do."""
        current = self._require_labelled(session)
        if not paint.changed_pixels:
            return "No change painted yet."
        names = {c.id: c.name for c in self.pipeline(session).bundle.classes}
        pairs, counts = np.unique(np.stack([current.labels[paint.changed], paint.labels[paint.changed]], axis=1),
                                  axis=0, return_counts=True)
        order = np.argsort(-counts)
        moves = ", ".join(f"{names[int(pairs[i][0])]} → {names[int(pairs[i][1])]} {int(counts[i])}" for i in order[:6])
        more = f" and {len(order) - 6} more" if len(order) > 6 else ""
        return f"{paint.changed_pixels} pixels changed: {moves}{more}."

    def paint_notice(self, session: Session, paint: lab.PaintResult) -> Notice | None:
        if not paint.far_pixels:
            return None
        return Notice(f"{paint.far_pixels} painted pixel(s) are in a colour that is no class of this model; "
                      "they were left unchanged. Use the brush colours of the palette.")
