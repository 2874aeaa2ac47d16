"""How a bundle frames its images: the manifest's ``"framing"`` entry, parsed and checked.

A generator only draws what it was trained on, framed as in its training set: faces of FFHQ models sit
with their eyes and mouth at fixed places; cars fill a box. A photo must be brought to that framing
before it is embedded. Two kinds:

- ``landmarks``: target positions (fractions of the crop side, x right, y down, pixel corners at whole
  numbers) of ``left_eye``, ``right_eye`` (as seen in the image) and ``mouth`` (its centre); ``fit`` says
  how a photo's landmarks give the crop: ``similarity`` (least squares over the points) or ``ffhq`` (the
  FFHQ recipe: a square from the eye line and the eye-to-mouth vector, ``recipe`` = ``eye_scale``,
  ``mouth_scale`` and ``shift``; no ``points`` needed).
- ``box``: the object fills a square around a box the user draws, with ``margin`` (fraction of its side)
  around it.

Both have ``padding`` (``reflect``, ``edge`` or ``background``: how pixels beyond the photo's border are
filled). A bundle without the entry gets the centre square of the photo, as before framings existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from editgan_core.photos import PhotoError

LANDMARKS = ("left_eye", "right_eye", "mouth")
FITS = ("similarity", "ffhq")
PADDINGS = ("reflect", "edge", "background")
FFHQ_RECIPE = {"eye_scale": 2.0, "mouth_scale": 1.8, "shift": 0.1}  # the FFHQ data set's own constants


class FramingError(PhotoError):
    """A manifest ``framing`` entry that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class Framing:
    """A bundle's framing (see the module docstring); ``kind`` is ``landmarks``, ``box`` or ``centre``."""

    kind: str
    size: int
    points: dict[str, tuple[float, float]] = field(default_factory=dict)
    fit: str = "similarity"
    recipe: dict[str, float] = field(default_factory=dict)
    margin: float = 0.0
    padding: str = "reflect"

    @property
    def uses_landmarks(self) -> bool:
        return self.kind == "landmarks"

    def target(self, name: str) -> tuple[float, float]:
        """Where landmark ``name`` lands in the crop, in crop pixels."""
        x, y = self.points[name]
        return x * self.size, y * self.size

    def to_manifest(self) -> dict[str, Any]:
        """The JSON entry that parses back to this framing."""
        entry: dict[str, Any] = {"kind": self.kind, "padding": self.padding}
        if self.kind == "landmarks":
            entry.update(points={k: list(v) for k, v in self.points.items()}, fit=self.fit)
            if self.fit == "ffhq":
                entry["recipe"] = dict(self.recipe)
        elif self.kind == "box":
            entry["margin"] = self.margin
        return entry


def _number(value: Any, what: str, lo: float, hi: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise FramingError(f"framing: {what} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _points(entry: dict[str, Any]) -> dict[str, tuple[float, float]]:
    raw = entry.get("points")
    if not isinstance(raw, dict) or set(raw) != set(LANDMARKS):
        raise FramingError(f"framing: points must give exactly {', '.join(LANDMARKS)}, got {raw!r}")
    points = {}
    for name in LANDMARKS:
        value = raw[name]
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise FramingError(f"framing: points.{name} must be [x, y], got {value!r}")
        points[name] = (_number(value[0], f"points.{name}[0]", 0, 1), _number(value[1], f"points.{name}[1]", 0, 1))
    (lx, ly), (rx, ry) = points["left_eye"], points["right_eye"]
    if (rx - lx) ** 2 + (ry - ly) ** 2 < 1e-6:
        raise FramingError("framing: the two eyes' target positions coincide")
    return points


def parse_framing(entry: Any, resolution: int) -> Framing:
    """The manifest's ``framing`` (or None: the centre square) as a checked ``Framing``."""
    if entry is None:
        return Framing("centre", resolution, padding="edge")
    if not isinstance(entry, dict):
        raise FramingError(f"framing must be an object, got {entry!r}")
    kind, padding = entry.get("kind"), entry.get("padding", "reflect")
    if padding not in PADDINGS:
        raise FramingError(f"framing: padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if kind == "box":
        return Framing("box", resolution, margin=_number(entry.get("margin", 0.0), "margin", 0, 1), padding=padding)
    if kind != "landmarks":
        raise FramingError(f"framing: kind must be 'landmarks' or 'box', got {kind!r}")
    fit = entry.get("fit", "similarity")
    if fit not in FITS:
        raise FramingError(f"framing: fit must be one of {', '.join(FITS)}, got {fit!r}")
    recipe = {}
    if fit == "ffhq":
        given = {**FFHQ_RECIPE, **(entry.get("recipe") or {})}
        recipe = {k: _number(given[k], f"recipe.{k}", 0 if k == "shift" else 0.1, 10) for k in FFHQ_RECIPE}
    points = _points(entry) if fit == "similarity" or "points" in entry else {}
    return Framing("landmarks", resolution, points=points, fit=fit, recipe=recipe, padding=padding)
