"""Contact sheets of the drawn faces, for a look at the domain.

``python -m editgan_core.domains.faces.sheets --grid out.png | --sweep out.png``; its speed is
``python -m editgan_core.eval.render_speed``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import cv2
import numpy as np

from editgan_core.domains.faces.attributes import ATTRIBUTE_RANGES
from editgan_core.domains.faces.rendering import colorize, render_face

# The sweep shows each row on the same calm face: eyes open, mouth shut, no fringe, looking ahead.
SWEEP_BASE = {"eye_open": 0.9, "mouth_open": 0.0, "fringe": 0.0, "gaze_x": 0.0, "gaze_y": 0.0, "smile": 0.3}
SWEEP_ATTRIBUTES = ("smile", "mouth_open", "eye_open", "gaze_x", "gaze_y", "pupil_size", "eyebrow_height",
                    "fringe", "hair_volume", "nose_size", "ear_size")


def _sheet(tiles: list[list[np.ndarray]], zoom: int) -> np.ndarray:
    rows = [np.concatenate(r, axis=1) for r in tiles]
    sheet = np.concatenate(rows, axis=0)
    return cv2.resize(sheet, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom > 1 else sheet


def grid(path: str, size: int = 64, rows: int = 4, cols: int = 8, first_seed: int = 0, zoom: int = 1) -> None:
    """Contact sheet: each cell is a face and its label colour map side by side."""
    tiles = []
    for r in range(rows):
        row = []
        for c in range(cols):
            s = render_face(first_seed + r * cols + c, size)
            row += [s.image, colorize(s.labels)]
        tiles.append(row)
    _write(path, _sheet(tiles, zoom))


def sweep(path: str, seed: int = 0, size: int = 64, steps: int = 8, zoom: int = 1, labels: bool = False,
          names: Sequence[str] = SWEEP_ATTRIBUTES) -> None:
    """One row per editable attribute, swept over its range with everything else fixed."""
    tiles = []
    for name in names:
        lo, hi = ATTRIBUTE_RANGES[name]
        row = []
        for v in np.linspace(lo, hi, steps):
            s = render_face(seed, size, **{**SWEEP_BASE, name: float(v)})
            row += [s.image, colorize(s.labels)] if labels else [s.image]
        tiles.append(row)
    _write(path, _sheet(tiles, zoom))


def _write(path: str, rgb: np.ndarray) -> None:
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    print(f"wrote {path} ({rgb.shape[1]}x{rgb.shape[0]})")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", metavar="PNG", help="write a contact sheet of faces + label maps")
    p.add_argument("--sweep", metavar="PNG", help="write one row per editable attribute")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="first seed (grid) or the swept face (sweep)")
    p.add_argument("--zoom", type=int, default=1, help="nearest-neighbour magnification of the sheets")
    p.add_argument("--labels", action="store_true", help="sweep: show label maps next to the images")
    from editgan_core.cli_common import setup_logging

    setup_logging()
    args = p.parse_args(argv)
    if not (args.grid or args.sweep):
        p.error("nothing to do: give --grid or --sweep")
    if args.grid:
        grid(args.grid, args.size, first_seed=args.seed, zoom=args.zoom)
    if args.sweep:
        sweep(args.sweep, args.seed, args.size, zoom=args.zoom, labels=args.labels)


if __name__ == "__main__":
    main()
