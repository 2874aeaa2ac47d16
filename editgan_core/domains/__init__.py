"""Procedural dataset domains (images with exact part labels), looked up by name.

A domain (a module or package) offers ``CLASSES``, ``PALETTE``, ``ATTRIBUTE_RANGES``, ``EDIT_CLASSES``,
``sample_attributes(seed)``, ``render(attrs, size)``, ``render_face``-style seeded rendering and
``render_batch(seeds, size)``; optionally ``ATTRIBUTE_SPECS`` (every drawn value, for the attribute net's extra
targets), ``framing_entry()`` and ``BACKGROUND`` (the manifest framing and background colour of its bundles).
Modules are imported on first use so that importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from types import ModuleType

DOMAINS: dict[str, str] = {"faces": "editgan_core.domains.faces"}


def get_domain(name: str) -> ModuleType:
    """The domain module registered as ``name`` (e.g. ``"faces"``)."""
    try:
        module = DOMAINS[name]
    except KeyError:
        raise KeyError(f"unknown domain {name!r}; known: {', '.join(sorted(DOMAINS))}") from None
    return importlib.import_module(module)
