"""The model picker's side: which bundles there are, and what the page says about the active one.

A bundle made by ``bundle create`` may lack an encoder or a segmentation branch; the page shows its
model card and, beside each section, what a missing component costs and how to add it
(``EditGANPipeline.capabilities``), instead of failing when a button is pressed.
"""

from __future__ import annotations

import html
import logging
import re

import numpy as np
from PIL import Image

from editgan_core.bundle import Bundle
from editgan_core.model_card import CARD_FILE, SAMPLES_FILE
from editgan_core.pipeline import EditGANPipeline
from webapp.actions.base import StudioBase
from webapp.outcomes import ModelInfo

log = logging.getLogger(__name__)

MAX_CARD_BYTES = 40_000  # a card is a page or two; a README grown past this is cut, with a pointer to the file
CARD_CUT = "\n\n*… cut here: the full card is README.md in the bundle folder.*"
MAX_SAMPLES_SIDE = 4096  # the card's preview grid is at most 8 x 256 px wide; anything far larger is not it
# Links to files inside the bundle (the preview picture) cannot be served from the page; absolute URLs can.
RELATIVE_IMAGE = re.compile(r"!\[[^\]]*\]\((?![a-z][a-z0-9+.-]*:|/)[^)]*\)\s*", re.IGNORECASE)


def card_text(bundle: Bundle) -> str:
    """``Bundle.model_card``, reading at most ``MAX_CARD_BYTES`` of a README that has grown long."""
    path = bundle.root / CARD_FILE
    if path.is_file() and path.stat().st_size > MAX_CARD_BYTES:
        with path.open("rb") as f:
            return f.read(MAX_CARD_BYTES).decode("utf-8", errors="ignore") + CARD_CUT
    return bundle.model_card()


def card_markdown(text: str) -> str:
    """A model card as the page shows it: headings one level down (it sits inside an accordion), and
    pictures stored beside it left out (the page shows the preview grid itself)."""
    text = RELATIVE_IMAGE.sub("", text)
    return re.sub(r"^(#{1,5}) ", r"\1# ", text, flags=re.MULTILINE)


def card_picture(bundle: Bundle) -> np.ndarray | None:
    """The card's preview grid (samples and their label maps), or None when the bundle has none usable."""
    path = bundle.root / SAMPLES_FILE
    if not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            if max(image.size) > MAX_SAMPLES_SIDE:
                log.warning("%s is %dx%d px, too large for a preview; not shown", path, *image.size)
                return None
            return np.array(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None


def summary_line(pipe: EditGANPipeline) -> str:
    """One line about the model, with what it lacks (the notes beside each section say more)."""
    b, caps = pipe.bundle, pipe.capabilities
    parts = [f"**{html.escape(b.title)}** · {pipe.resolution} px · {len(b.classes)} part classes · {pipe.device}"]
    if not caps.has_segmenter:
        parts.append("no segmentation branch yet: painting and learning edits are off")
    if not caps.has_encoder:
        parts.append("no encoder: embedding is slower")
    if caps.has_lpips is False:
        parts.append("LPIPS weights not installed: losses use L2 only")
    return " · ".join(parts)


class ModelActions(StudioBase):
    def model_choices(self, refresh: bool = False) -> list[tuple[str, str]]:
        """(label, id) of every model for the picker; ``refresh`` first looks for bundles created since the
        app started (``bundle create`` into a checkpoints folder)."""
        if refresh:
            self.registry.refresh()
        return self.registry.choices()

    def model_info(self, pipe: EditGANPipeline) -> ModelInfo:
        caps = pipe.capabilities
        return ModelInfo(bundle_id=pipe.bundle.id, summary=summary_line(pipe),
                         card=card_markdown(card_text(pipe.bundle)), samples=card_picture(pipe.bundle),
                         notes=caps.missing(), can_segment=caps.can_segment, has_encoder=caps.has_encoder)
