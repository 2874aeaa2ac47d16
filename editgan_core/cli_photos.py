"""Photos in the batch command: ``apply --align`` and ``--paste-back``.

``--align`` crops each photo to the bundle's framing from the eye and mouth points (or a box) found in a
sidecar file ``NAME.align.json`` beside it, or in the entry for its file name in ``--landmarks FILE``:
``{"left_eye": [x, y], "right_eye": [x, y], "mouth": [x, y]}`` or ``{"box": [x0, y0, x1, y1]}``, in photo
pixels of the upright (EXIF-rotated) photo. No face detector ships (docs/results.md says why), so the points
come from the user or another tool. ``--paste-back`` writes ``NAME.photo.EXT`` too: the photo at its own size
and in its own format, with the edit blended in around the region it changed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editgan_core.latents import LatentFile
from editgan_core.photos.export import encode_like, suffix
from editgan_core.photos.framing import LANDMARKS
from editgan_core.photos.workflow import AlignedPhoto
from editgan_core.pipeline import EditGANPipeline, InputError
from editgan_core.utils import atomic_write
from editgan_core.vectors import EditVector

SIDECAR = ".align.json"
MAX_SIDECAR_BYTES = 1_000_000


def add_photo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--align", action="store_true",
                        help=f"crop each photo to the model's framing from its NAME{SIDECAR} (or --landmarks) points")
    parser.add_argument("--landmarks", type=Path,
                        help="JSON file: {photo file name: {left_eye, right_eye, mouth: [x, y]} or {box: [x0, y0, x1, "
                             "y1]}}, for --align")
    parser.add_argument("--paste-back", action="store_true",
                        help="also write NAME.photo.EXT: the full-size photo with the edit blended in")


def _read_json(path: Path) -> Any:
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise InputError(f"{path.name} is larger than {MAX_SIDECAR_BYTES // 1000} kB")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path.name}: {exc}") from exc


def load_landmark_table(path: Path | None) -> dict[str, Any]:
    """The ``--landmarks`` file (or nothing)."""
    if path is None:
        return {}
    table = _read_json(path)
    if not isinstance(table, dict):
        raise InputError(f"{path.name} must map photo file names to points")
    return table


def marks_for(photo: Path, table: dict[str, Any]) -> dict[str, Any]:
    """``points=`` or ``box=`` keyword arguments of ``EditGANPipeline.align`` for one photo."""
    sidecar = photo.with_name(photo.stem + SIDECAR)
    entry = _read_json(sidecar) if sidecar.is_file() else table.get(photo.name)
    if entry is None:
        raise InputError(f"no points for {photo.name}: write {sidecar.name} or an entry in --landmarks")
    if isinstance(entry, dict) and "box" in entry:
        box = entry["box"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)):
            raise InputError(f"{photo.name}: box must be [x0, y0, x1, y1]")
        return {"box": [float(v) for v in box]}
    if not isinstance(entry, dict) or not all(
            isinstance(entry.get(n), list) and len(entry[n]) == 2 and all(isinstance(v, int | float) for v in entry[n])
            for n in LANDMARKS):
        raise InputError(f"{photo.name}: give {', '.join(LANDMARKS)} as [x, y] each, or a box")
    return {"points": {n: (float(entry[n][0]), float(entry[n][1])) for n in LANDMARKS}}


@dataclass(frozen=True)
class PhotoOptions:
    """What ``--align``, ``--landmarks`` and ``--paste-back`` ask for."""

    align: bool = False
    paste_back: bool = False
    table: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PhotoOptions:
        return cls(args.align, args.paste_back, load_landmark_table(args.landmarks))

    def settings(self) -> dict[str, Any]:
        """For the run record: a rerun with other photo options redoes (or refuses) the outputs."""
        return {"align": self.align, "paste_back": self.paste_back} if self.align or self.paste_back else {}

    def aligned(self, pipeline: EditGANPipeline, path: Path) -> AlignedPhoto | None:
        """The aligned photo when asked for (else None: the pipeline takes the centre square)."""
        if path.suffix.lower() == ".safetensors":
            if self.paste_back:
                raise InputError(f"{path.name}: --paste-back needs the photo, not a latent file")
            return None
        if not (self.align or self.paste_back):
            return None
        return pipeline.align(path, **(marks_for(path, self.table) if self.align else {}))


def write_pasted(pipeline: EditGANPipeline, aligned: AlignedPhoto, start: LatentFile, edited: LatentFile,
                 vectors: Sequence[tuple[EditVector, float | None]], out_dir: Path, name: str) -> Path:
    """NAME.photo.EXT: the edit (start -> edited) pasted into the photo, in the photo's own format."""
    before, after = pipeline.render(start.latent), pipeline.render(edited.latent)
    class_ids = sorted({c for vector, _ in vectors for c in vector.class_ids}) or None
    result = pipeline.paste_back(aligned, before, after, class_ids)
    data = encode_like(result.image, aligned.photo.format)
    return atomic_write(out_dir / f"{name}.photo{suffix(aligned.photo.format)}", lambda p: p.write_bytes(data))
