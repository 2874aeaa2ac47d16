"""The editing vector δw+ itself: its metadata, W+ arithmetic and the rules for its name.

A name is shown to users and is also the file stem in a library folder, so it is cleaned here once
and compared through ``name_key``, which makes look-alike names (case, compatibility forms such as
full-width letters, separators) one name.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch

MAX_NAME_CHARS = 64
MAX_NAME_INPUT_CHARS = 1000  # longer input is refused, not trimmed: it is no name someone typed
MAX_DESCRIPTION_CHARS = 2000
MAX_DEFAULT_SCALE = 100.0  # the page's strength sliders span -3..3
MAX_ABS_VALUE = 1e4  # δw+ entries are offsets of a few units; far beyond this a file is garbage or hostile
MAX_CLASS_IDS = 256
MAX_META_DEPTH = 8  # nesting of a vector's JSON metadata (its 'extra' holds flat metrics)
MAX_META_CHARS = 64 * 1024  # the metadata as stored, so every file this package writes can be read back
MAX_NAME_BYTES = 192  # stem + ".safetensors" must fit the common 255-byte file-name limit
_NAME_PUNCT = set(" -_()")
_RESERVED = {"con", "prn", "aux", "nul", "clock$"} | {
    f"{dev}{d}" for dev in ("com", "lpt") for d in [*"0123456789", "¹", "²", "³"]
}
# Scripts with many letters drawn like Latin ones (Cyrillic 'а', Greek 'ο'); one name may use only one of them.
_LOOKALIKE_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")


class VectorError(ValueError):
    """A vector file, name or operation the user asked for cannot be used; the message says why."""


class VectorNotFoundError(VectorError):
    """No vector of that name in the library."""


def utc_now() -> str:
    """ISO-8601 UTC timestamp used for ``created``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


@dataclass(kw_only=True, eq=False)
class EditVector:
    """δw+ plus what a user (and the loader) needs to know about it."""

    delta: torch.Tensor = field(repr=False)
    name: str
    description: str = ""
    bundle_id: str
    class_ids: list[int] = field(default_factory=list)
    default_scale: float = 1.0
    created: str = field(default_factory=utc_now)
    source: str = "learned"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.delta, torch.Tensor):
            raise VectorError(f"vector '{self.name}': delta must be a torch.Tensor, got {type(self.delta).__name__}")
        if self.delta.ndim != 2 or self.delta.numel() == 0:
            raise VectorError(
                f"vector '{self.name}': delta must have shape (n_latent, style_dim), got {tuple(self.delta.shape)}"
            )
        if not (self.delta.is_floating_point()):
            raise VectorError(f"vector '{self.name}': delta must hold floats, got {self.delta.dtype}")
        self.delta = self.delta.detach().to("cpu", torch.float32).contiguous()
        self.class_ids = [int(c) for c in self.class_ids]
        self.default_scale = float(self.default_scale)
        if not math.isfinite(self.default_scale):
            raise VectorError(f"vector '{self.name}': default scale must be a finite number")
        self._check_bounds()

    def _check_bounds(self) -> None:
        """Refuse what no vector needs, naming the limit (files and API calls reach this constructor)."""
        label = f"vector '{str(self.name)[:80]}'"
        if abs(self.default_scale) > MAX_DEFAULT_SCALE:
            raise VectorError(f"{label}: default strength {self.default_scale:g} is beyond the limit of "
                              f"±{MAX_DEFAULT_SCALE:g}")
        check_text(None, self.description)
        if len(self.class_ids) > MAX_CLASS_IDS:
            raise VectorError(f"{label} names {len(self.class_ids)} classes; the limit is {MAX_CLASS_IDS}")
        biggest = float(self.delta.abs().max())
        if not biggest <= MAX_ABS_VALUE:  # also NaN
            raise VectorError(f"{label} holds values up to {biggest:.3g}; editing vectors hold offsets of a few "
                              f"units (limit {MAX_ABS_VALUE:g})")
        if json_depth(self.extra) > MAX_META_DEPTH:
            raise VectorError(f"{label}: its extra metadata is nested deeper than {MAX_META_DEPTH} levels")

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(n_latent, style_dim) of the W+ space this vector lives in."""
        return (int(self.delta.shape[0]), int(self.delta.shape[1]))

    @property
    def layers(self) -> tuple[int, int]:
        """The W+ rows this vector acts on (``extra["layers"]``, default all): the gallery's layer range."""
        stored = self.extra.get("layers")
        if stored is None:
            return (0, self.latent_shape[0])
        start, stop = (int(v) for v in stored)
        if not 0 <= start < stop <= self.latent_shape[0]:
            raise VectorError(f"vector '{self.name}': layer range {stored} is not inside 0..{self.latent_shape[0]}")
        return (start, stop)

    def with_layers(self, start: int, stop: int) -> EditVector:
        """A copy acting only on rows ``start..stop-1``; δ itself is kept whole, so the range can widen again."""
        copy = EditVector(delta=self.delta, name=self.name, description=self.description, bundle_id=self.bundle_id,
                          class_ids=self.class_ids, default_scale=self.default_scale, created=self.created,
                          source=self.source, extra={**self.extra, "layers": [int(start), int(stop)]})
        _ = copy.layers  # validates the range now, not at the first apply
        return copy

    def effective_delta(self) -> torch.Tensor:
        """δ with the rows outside ``layers`` zeroed."""
        start, stop = self.layers
        if (start, stop) == (0, self.latent_shape[0]):
            return self.delta
        out = torch.zeros_like(self.delta)
        out[start:stop] = self.delta[start:stop]
        return out

    def applied_to(self, latent: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """w+ + s·δ for one latent (n, d) or a batch (B, n, d); ``scale=None`` uses the default scale."""
        return compose(latent, [(self, self.default_scale if scale is None else scale)])

    def metadata(self) -> dict[str, Any]:
        """Everything but the tensor, as stored in the file's JSON."""
        return {
            "name": self.name,
            "description": self.description,
            "bundle_id": self.bundle_id,
            "latent_shape": list(self.latent_shape),
            "class_ids": list(self.class_ids),
            "default_scale": self.default_scale,
            "created": self.created,
            "source": self.source,
            "extra": self.extra,
        }


def check_text(name: Any, description: Any = "") -> None:
    """Refuse a typed name or description over its limit before anything is done with it."""
    for what, text, limit, shown in (("vector name", name, MAX_NAME_INPUT_CHARS, MAX_NAME_CHARS),
                                     ("description", description, MAX_DESCRIPTION_CHARS, MAX_DESCRIPTION_CHARS)):
        if text is not None and not isinstance(text, str):
            raise VectorError(f"the {what} must be text")
        if text is not None and len(text) > limit:
            raise VectorError(f"the {what} has {len(text)} characters; the limit is {shown}")


def json_depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (0 for a scalar), without recursion."""
    depth, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list | tuple):
            depth = max(depth, level)
            todo += [(x, level + 1) for x in item if isinstance(x, dict | list | tuple)]
    return depth


# ----------------------------------------------------------------------------------------------- arithmetic


def compose(
    latent: torch.Tensor, vectors_and_scales: Iterable[tuple[EditVector | torch.Tensor, float | None]]
) -> torch.Tensor:
    """latent + Σ sᵢ·δᵢ — vectors compose by summation; ``None`` scale means the vector's default."""
    if latent.ndim not in (2, 3):
        raise VectorError(f"latent must be (n_latent, dim) or (B, n_latent, dim), got {tuple(latent.shape)}")
    out = latent
    for item, scale in vectors_and_scales:
        if isinstance(item, EditVector):
            delta, label = item.effective_delta(), f"vector '{item.name}'"
            scale = item.default_scale if scale is None else scale
        else:
            delta, label = item, "delta"
            scale = 1.0 if scale is None else scale
        if delta.ndim != 2 or tuple(delta.shape) != tuple(latent.shape[-2:]):
            raise VectorError(
                f"{label} has latent {shape_str(delta.shape)} but the latent is {shape_str(latent.shape[-2:])}"
            )
        scale = float(scale)
        if not math.isfinite(scale):
            raise VectorError(f"scale for {label} must be a finite number, got {scale}")
        out = out + scale * delta.to(device=latent.device, dtype=latent.dtype)
    return out


# ----------------------------------------------------------------------------------------------- names


def _scripts(text: str) -> set[str]:
    """The look-alike scripts whose letters ``text`` uses (from the Unicode character names)."""
    found = set()
    for c in unicodedata.normalize("NFKC", text):
        if unicodedata.category(c)[0] == "L":
            script = unicodedata.name(c, "").split(" ")[0]
            if script in _LOOKALIKE_SCRIPTS:
                found.add(script)
    return found


def sanitize_name(name: str) -> str:
    """A display name that is also a safe, portable file stem (no separators, dots, controls).

    Compatibility forms become their plain letters (NFKC: full-width 'ｓｍｉｌｅ' is stored as 'smile'), so a
    name never imitates another by its look; names mixing Latin, Greek and Cyrillic letters are refused
    for the same reason.
    """
    check_text(name)
    if not isinstance(name, str):
        raise VectorError("the vector name must be text")
    name = unicodedata.normalize("NFKC", name)
    kept = [c if (c in _NAME_PUNCT or unicodedata.category(c)[0] in "LNM") else " " for c in name]
    clean = re.sub(r"\s+", " ", "".join(kept)).strip().lstrip("-").strip()
    clean = clean[:MAX_NAME_CHARS].rstrip()
    while len(clean.encode("utf-8")) > MAX_NAME_BYTES:
        clean = clean[:-1].rstrip()
    if not clean or not any(unicodedata.category(c)[0] in "LN" for c in clean):
        raise VectorError(f"'{name[:80]}' is not usable as a vector name: use letters or digits")
    if clean.casefold() in _RESERVED:
        raise VectorError(f"'{clean}' is a reserved name on some systems; choose another vector name")
    scripts = _scripts(clean)
    if len(scripts) > 1:
        mixed = " and ".join(s.title() for s in sorted(scripts))
        raise VectorError(f"'{clean}' mixes {mixed} letters, which can imitate another name; use one alphabet")
    return clean


def name_key(name: str) -> str:
    """What two names must differ in to be two vectors: not case (one file on macOS/Windows), not a
    compatibility form (full-width or stylised letters, ligatures) and not the separator (' ', '_', '-')."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return re.sub(r"[\s_-]+", " ", folded).strip()
