"""Batch editing and model bundles from the command line.

    python -m editgan_core apply --bundle checkpoints/faces64 --vector smile=1.0 --vector look_left=0.5 \\
        --refine 30 IN_DIR OUT_DIR

Every image in IN_DIR is embedded, and every latent file (``*.safetensors`` in the format of
``editgan_core.latents``, e.g. an earlier run's outputs or the studio's export) is read as it is; each is
edited with the given vectors (bundle presets, vectors saved in the studio or in ``--library``, or paths
to vector files) and optionally refined. OUT_DIR receives NAME.png and NAME.latent.safetensors, which
records the embedding it started from and the edits made, so OUT_DIR can be the next run's IN_DIR (an
image beside a latent file of its name is taken for its render and left out). Finished outputs are skipped, so an
interrupted run resumes; unreadable inputs are reported and skipped. ``python -m editgan_core bundle ...``
creates and grows model bundles (see ``editgan_core.bundle_cli``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from editgan_core import bundle_cli
from editgan_core.cli_common import add_common_args, open_pipeline, parse_command
from editgan_core.latents import SUFFIX as LATENT_SUFFIX
from editgan_core.latents import EditRecord, LatentFile, load_latent, save_latent
from editgan_core.pipeline import EditGANPipeline, InputError
from editgan_core.utils import IMAGE_SUFFIXES, atomic_write
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


def list_inputs(in_dir: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """(output name, input) for the images and latent files in ``in_dir``, and the inputs whose names clash.

    An image beside a latent file of the same name is taken for its render (an earlier run's output) and
    left out: the latent is the exact input.
    """
    by_name: dict[str, list[Path]] = {}
    for path in sorted(in_dir.iterdir()):
        suffix = path.suffix.lower()
        if not path.is_file() or (suffix not in IMAGE_SUFFIXES and suffix != ".safetensors"):
            continue
        name = path.stem.removesuffix(".latent") if suffix == ".safetensors" else path.stem
        by_name.setdefault(name, []).append(path)
    inputs, clashes = [], []
    for name, paths in by_name.items():
        chosen = [p for p in paths if p.suffix.lower() == ".safetensors"] or paths
        if len(chosen) == 1:
            inputs.append((name, chosen[0]))
        else:
            clashes.append(f"{', '.join(p.name for p in chosen)}: all would be written as {name}.png")
    return inputs, clashes


def start_latent(pipeline: EditGANPipeline, path: Path, embed_steps: int) -> LatentFile:
    """The latent an input starts from: a latent file as written (checked against the bundle), an image embedded."""
    if path.suffix.lower() == ".safetensors":
        item = load_latent(path, pipeline.bundle.id, pipeline.latent_shape)
        item.source = item.source or {"latent": path.name}
        return item
    result = pipeline.embed(path, steps=embed_steps)
    return LatentFile(latent=result.latent, bundle_id=pipeline.bundle.id,
                      source={"image": path.name, "embed_steps": embed_steps, "psnr": result.psnr})


def edit_latent(pipeline: EditGANPipeline, start: LatentFile, vectors: list[tuple[EditVector, float | None]],
                refine_steps: int) -> LatentFile:
    """``start`` with the vectors applied (and refined), recording the edit after any earlier ones."""
    if refine_steps > 0 and pipeline.can_segment:
        result = pipeline.refine(start.latent, vectors, steps=refine_steps)
        edited, steps_done = result.latent, result.steps_done
    else:
        edited, steps_done = pipeline.apply(start.latent, vectors), 0
    record = EditRecord(tuple((v.name, v.default_scale if s is None else float(s)) for v, s in vectors), steps_done)
    original = start.original if start.original is not None else start.latent
    return LatentFile(latent=edited, bundle_id=start.bundle_id, original=original, edits=[*start.edits, record],
                      source=start.source)


def apply_folder(pipeline: EditGANPipeline, vectors, in_dir: Path, out_dir: Path, embed_steps: int,
                 refine_steps: int) -> tuple[int, int, list[str]]:
    """Returns (written, skipped, failures)."""
    inputs, failures = list_inputs(in_dir)
    for line in failures:
        tqdm.write(f"skipped {line}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, 0
    for name, path in tqdm(inputs, desc="editing", unit="input"):
        out_png, out_latent = out_dir / f"{name}.png", out_dir / f"{name}{LATENT_SUFFIX}"
        if out_png.exists() and out_latent.exists():
            skipped += 1
            continue
        try:
            edited = edit_latent(pipeline, start_latent(pipeline, path, embed_steps), vectors, refine_steps)
            image = pipeline.render(edited.latent, with_labels=False).image
        except (InputError, OSError, ValueError) as exc:
            failures.append(f"{path.name}: {exc}")
            tqdm.write(f"skipped {path.name}: {exc}")
            continue
        save_latent(edited, out_latent)
        atomic_write(out_png, lambda p, im=image: Image.fromarray(np.asarray(im)).save(p, format="PNG"))
        written += 1
    return written, skipped, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m editgan_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    apply = sub.add_parser("apply", help="embed (images) or read (latent files), edit and save every input of a folder")
    apply.add_argument("in_dir", type=Path)
    apply.add_argument("out_dir", type=Path)
    apply.add_argument("--vector", action="append", type=parse_vector_arg, required=True,
                       help="NAME[=SCALE] of a preset/library vector or a .safetensors path; repeatable")
    apply.add_argument("--library", type=Path,
                       help="folder of saved vectors (default: the one the studio saves into)")
    apply.add_argument("--embed-steps", type=int, default=100)
    apply.add_argument("--refine", type=int, default=0, help="self-supervised refinement steps (0 = instant)")
    add_common_args(apply, bundle=True, device=True)
    bundle_cli.register(sub)
    args = parse_command(parser, argv)
    if args.command == "bundle":
        return bundle_cli.run(args)
    if not args.in_dir.is_dir():
        parser.error(f"{args.in_dir} is not a folder")
    if args.out_dir.resolve() == args.in_dir.resolve():
        parser.error("OUT_DIR must differ from IN_DIR: the outputs would overwrite the inputs")
    pipeline = open_pipeline(args)
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
