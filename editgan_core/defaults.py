"""Runtime defaults: what a caller gets when it names no step count or learning rate.

One set serves the page, the CLI and Python callers, so they cannot drift apart; a bundle may
override any of them in its manifest (``"defaults"``, beside ``"embedding"``), e.g. a larger model
that needs more steps. Missing keys take the values below; unknown keys and bad values are refused
when the bundle is opened, not at the first edit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MAX_STEPS = 10_000  # a bound on any default: beyond it a typo, not a setting


@dataclass(frozen=True)
class RuntimeDefaults:
    """Interactive values: short enough that a page waits seconds, not minutes, on a laptop CPU."""

    embed_steps: int = 100  # Adam steps after the encoder's guess (0 = encoder only)
    edit_steps: int = 30  # learning an edit from a painting
    edit_lr: float = 0.02  # Adam on δw+ when learning and refining edits (EditGAN's value)
    refine_steps: int = 10  # adapting applied vectors to one picture (0 = apply only)

    def __post_init__(self) -> None:
        for name, least in (("embed_steps", 0), ("edit_steps", 1), ("refine_steps", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= MAX_STEPS:
                raise ValueError(f"{name} must be a whole number in {least}..{MAX_STEPS}, got {value!r}")
        lr = self.edit_lr
        if not isinstance(lr, int | float) or isinstance(lr, bool) or not 0 < lr < 10:
            raise ValueError(f"edit_lr must be a number in (0, 10), got {lr!r}")

    @classmethod
    def from_manifest(cls, entry: Any) -> RuntimeDefaults:
        """The manifest's ``"defaults"`` object (or nothing) over the core's values."""
        if entry is None:
            return cls()
        if not isinstance(entry, dict):
            raise ValueError(f"'defaults' must be an object of named values, got {type(entry).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(entry) - set(known))
        if unknown:
            raise ValueError(f"unknown defaults {', '.join(unknown)} (known: {', '.join(known)})")
        return cls(**entry)

    def to_manifest(self) -> dict[str, Any]:
        return asdict(self)
