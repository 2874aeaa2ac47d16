"""Where the studio looks for model bundles and keeps what it writes, without guessing from its own location.

An installed package sits in site-packages, a Space in its repository, a checkout anywhere: counting
parent folders of a module finds ``checkpoints/`` only in the last case. So every folder comes from the
environment, the working directory or the user's cache:

- bundles by name: each folder of ``EDITGAN_CHECKPOINTS`` (``os.pathsep``-separated), then
  ``./checkpoints`` (a checkout or a Space's repository root), then ``<home>/checkpoints``;
- ``<home>``, for user vectors, downloaded weights and other caches: ``EDITGAN_HOME`` when set (e.g. a
  Space's persistent disk), else ``$XDG_CACHE_HOME/editgan-studio`` (``~/.cache/editgan-studio``).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "EDITGAN_HOME"
ENV_CHECKPOINTS = "EDITGAN_CHECKPOINTS"
LOCAL_CHECKPOINTS = Path("checkpoints")


def editgan_home() -> Path:
    """The per-user folder for what the studio keeps outside bundles."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "editgan-studio"


def cache_dir(kind: str) -> Path:
    """``<home>/<kind>``, e.g. ``lpips`` for downloaded LPIPS weights (not created here)."""
    return editgan_home() / kind


def checkpoint_dirs() -> list[Path]:
    """Folders searched for bundles (and shipped weight files) by name, first match first; may not exist."""
    env = [Path(p).expanduser() for p in os.environ.get(ENV_CHECKPOINTS, "").split(os.pathsep) if p.strip()]
    dirs = [*env, LOCAL_CHECKPOINTS, editgan_home() / "checkpoints"]
    unique: dict[Path, Path] = {}
    for d in dirs:
        unique.setdefault(d.absolute(), d)
    return list(unique.values())


def find_checkpoint_file(name: str) -> Path:
    """``name`` in the first checkpoint folder holding it, else where the first folder would hold it
    (so an error names a sensible place)."""
    dirs = checkpoint_dirs()
    return next((d / name for d in dirs if (d / name).is_file()), dirs[0] / name)
