"""Batch editing from the command line.

    python -m editgan_core apply --bundle checkpoints/faces64 --vector smile=1.0 --vector look_left=0.5 \\
        --refine 30 IN_DIR OUT_DIR

Every image in IN_DIR is embedded, edited with the given vectors (bundle presets, vectors saved
in the studio or in ``--library``, or paths to vector files) and optionally refined; OUT_DIR receives NAME.png and
NAME.latent.safetensors. Finished outputs are skipped, so an interrupted run resumes; unreadable
images are reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

from editgan_core.pipeline import EditGANPipeline, InputError
from editgan_core.train.data import IMAGE_SUFFIXES
from editgan_core.utils import atomic_write
from editgan_core.vectors import EditVector, VectorError, VectorLibrary, load_vector, open_library


def parse_vector_arg(text: str) -> tuple[str, float | None]:
    name, sep, scale = text.rpartition("=")
    if not sep:
        return text, None
    try:
        return name, float(scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--vector expects NAME or NAME=SCALE, got {text!r}") from None


def resolve_vectors(pipeline: EditGANPipeline, specs: list[tuple[str, float | None]],
                    library: Path | None) -> list[tuple[EditVector, float | None]]:
    bundle = pipeline.bundle
    if library is None:  # the folder the studio saves into
        lib = open_library(bundle.id, pipeline.latent_shape, bundle.vectors_dir)
    else:
        lib = VectorLibrary(library, bundle.id, pipeline.latent_shape, read_only_roots=[bundle.vectors_dir])
    resolved = []
    for name, scale in specs:
        if Path(name).suffix == ".safetensors" and Path(name).is_file():
            vector = load_vector(name, expect_bundle_id=pipeline.bundle.id, expect_shape=pipeline.latent_shape)
        else:
            vector = lib.get(name)
        resolved.append((vector, scale))
    return resolved


def apply_folder(pipeline: EditGANPipeline, vectors, in_dir: Path, out_dir: Path, embed_steps: int,
                 refine_steps: int) -> tuple[int, int, list[str]]:
    """Returns (written, skipped, failures)."""
    images = sorted(p for p in in_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped, failures = 0, 0, []
    for path in tqdm(images, desc="editing", unit="img"):
        out_png, out_latent = out_dir / f"{path.stem}.png", out_dir / f"{path.stem}.latent.safetensors"
        if out_png.exists() and out_latent.exists():
            skipped += 1
            continue
        try:
            latent = pipeline.embed(path, steps=embed_steps).latent
            if refine_steps > 0 and pipeline.can_segment:
                edited = pipeline.refine(latent, vectors, steps=refine_steps).latent
            else:
                edited = pipeline.apply(latent, vectors)
            image = pipeline.render(edited, with_labels=False).image
        except (InputError, OSError, ValueError) as exc:
            failures.append(f"{path.name}: {exc}")
            tqdm.write(f"skipped {path.name}: {exc}")
            continue
        tensors = {"original": latent[0].contiguous(), "edited": edited[0].contiguous()}
        atomic_write(out_latent, lambda p, t=tensors: save_file(t, str(p), metadata={"bundle": pipeline.bundle.id}))
        atomic_write(out_png, lambda p, im=image: Image.fromarray(np.asarray(im)).save(p, format="PNG"))
        written += 1
    return written, skipped, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m editgan_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    apply = sub.add_parser("apply", help="embed, edit and save every image of a folder")
    apply.add_argument("in_dir", type=Path)
    apply.add_argument("out_dir", type=Path)
    apply.add_argument("--bundle", required=True)
    apply.add_argument("--vector", action="append", type=parse_vector_arg, required=True,
                       help="NAME[=SCALE] of a preset/library vector or a .safetensors path; repeatable")
    apply.add_argument("--library", type=Path,
                       help="folder of saved vectors (default: the one the studio saves into)")
    apply.add_argument("--embed-steps", type=int, default=100)
    apply.add_argument("--refine", type=int, default=0, help="self-supervised refinement steps (0 = instant)")
    apply.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    if not args.in_dir.is_dir():
        parser.error(f"{args.in_dir} is not a folder")
    pipeline = EditGANPipeline.from_pretrained(args.bundle, device=args.device)
    try:
        vectors = resolve_vectors(pipeline, args.vector, args.library)
    except VectorError as exc:
        parser.error(str(exc))
    written, skipped, failures = apply_folder(pipeline, vectors, args.in_dir, args.out_dir, args.embed_steps,
                                              args.refine)
    print(f"{written} written, {skipped} already done, {len(failures)} failed")
    for line in failures:
        print(f"  {line}", file=sys.stderr)
    return 1 if failures and not written and not skipped else 0
