"""2 · segmentation: the overlay follows its opacity slider."""

from __future__ import annotations

import numpy as np

from webapp.errors import user_errors
from webapp.events.common import LIGHT, QUIET, Wiring
from webapp.session import SessionBox


def wire_segmentation(w: Wiring) -> None:
    p = w.page

    @user_errors
    def on_opacity(box: SessionBox, opacity: float) -> np.ndarray | None:
        return w.studio.overlay(w.session(box), opacity)

    p.opacity.change(on_opacity, [p.box, p.opacity], p.seg_overlay, **QUIET, **LIGHT)
