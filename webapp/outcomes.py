"""What the studio's actions hand to the page: progress, notices, outcomes and the view of a session.

Plain dataclasses, no Gradio: the page (``webapp.events``) maps them onto components.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from editgan_core.fidelity import FidelityReport
from editgan_core.pipeline import EditResult
from webapp.session import Step


@dataclass
class Progress:
    """One optimisation step done; ``preview`` is set now and then (see ``webapp.streaming``)."""

    step: int
    steps: int
    loss: float
    preview: np.ndarray | None = None


@dataclass
class Notice:
    """Something the user should be told (shown as a warning, the action still goes on)."""

    text: str


@dataclass
class EmbedOutcome:
    step: Step
    source: np.ndarray  # the photo as the model sees it
    psnr: float
    steps_done: int
    stopped: bool
    fidelity: FidelityReport | None = None
    tuning_step_s: float | None = None  # estimated from the embedding: prices pivotal tuning before it is chosen


@dataclass
class TuneOutcome:
    """Pivotal tuning done: the photo's reconstruction by the tuned copy, and what it cost."""

    step: Step
    psnr_before: float
    psnr_after: float
    seconds: float
    steps_done: int
    stopped: bool


@dataclass
class EditOutcome:
    step: Step
    before: np.ndarray
    region: np.ndarray  # (H, W) bool
    result: EditResult
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class View:
    """Everything the page shows about the session's current step."""

    image: np.ndarray | None
    labels: np.ndarray | None  # class ids
    label_picture: np.ndarray | None
    overlay: np.ndarray | None
    editor: dict[str, object] | None
    active: list[tuple[str, float]]
    history: list[tuple[np.ndarray, str]]
    history_text: str
    can_undo: bool
    can_redo: bool
    history_start: int = 0  # history index of the first picture in ``history``


@dataclass
class ModelInfo:
    """What the page says about a model: one line, its card (Markdown and preview picture), and a note per
    missing component (``Capabilities.missing``: "encoder", "segmenter", ...) for the section it concerns."""

    bundle_id: str
    summary: str
    card: str
    samples: np.ndarray | None
    notes: dict[str, str]
    can_segment: bool
    has_encoder: bool
