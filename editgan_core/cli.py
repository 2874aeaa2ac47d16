"""Batch editing and model bundles from the command line.

    python -m editgan_core apply --bundle checkpoints/faces64 --vector smile=1.0 --vector look_left=0.5 \\
        --refine 30 IN_DIR OUT_DIR

Every image in IN_DIR is embedded, and every latent file (``*.safetensors`` in the format of
``editgan_core.latents``, e.g. an earlier run's outputs or the studio's export) is read as it is; each is
edited with the given vectors (bundle presets, vectors saved in the studio or in ``--library``, or paths
to vector files) and optionally corrected for each face's side effects (``--keep-parts``: the other parts keep
their colour and size) and refined. OUT_DIR receives NAME.png and NAME.latent.safetensors, which
records the embedding it started from and the edits made, so OUT_DIR can be the next run's IN_DIR (an
image beside a latent file of its name is taken for its render and left out). Each latent file also records the
run's settings (bundle, vectors with scales and content digests, steps, the input's digest): outputs made with the
same settings are skipped, so an interrupted run resumes, and outputs made differently are refused unless
``--overwrite`` redoes them. Unreadable inputs are reported and skipped; the exit status is then 1, with the
failures listed after the summary. ``--align`` crops photos to the model's framing from eye and mouth points,
``--paste-back`` writes the full-size edited photo too (see ``editgan_core.cli_photos``).

Many workers: ``torchrun --nproc_per_node 4 -m editgan_core apply ...`` (each process takes a shard from
RANK/WORLD_SIZE and the GPU cuda:LOCAL_RANK), a Slurm array (SLURM_ARRAY_TASK_ID/COUNT), or ``--shard K/N``;
see ``editgan_core.sharding``. ``python -m editgan_core bundle ...`` creates and grows model bundles (see
``editgan_core.bundle_cli``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from editgan_core import bundle_cli
from editgan_core.bundle import MANIFEST
from editgan_core.cli_common import add_common_args, open_pipeline, parse_command
from editgan_core.cli_photos import PhotoOptions, add_photo_args, write_pasted
from editgan_core.latents import SUFFIX as LATENT_SUFFIX
from editgan_core.latents import EditRecord, LatentError, LatentFile, load_latent, save_latent
from editgan_core.photos.workflow import AlignedPhoto
from editgan_core.pipeline import EditGANPipeline, InputError
from editgan_core.sharding import parse_shard, shard_from_env, worker_device
from editgan_core.utils import IMAGE_SUFFIXES, atomic_write, file_sha256
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
        # an earlier run's NAME.photo.EXT (--paste-back) sits beside its latent like NAME.png
        name = path.stem.removesuffix(".latent") if suffix == ".safetensors" else path.stem.removesuffix(".photo")
        by_name.setdefault(name, []).append(path)
    inputs, clashes = [], []
    for name, paths in by_name.items():
        chosen = [p for p in paths if p.suffix.lower() == ".safetensors"] or paths
        if len(chosen) == 1:
            inputs.append((name, chosen[0]))
        else:
            clashes.append(f"{', '.join(p.name for p in chosen)}: all would be written as {name}.png")
    return inputs, clashes


def start_latent(pipeline: EditGANPipeline, path: Path, embed_steps: int,
                 aligned: AlignedPhoto | None = None) -> LatentFile:
    """The latent an input starts from: a latent file as written (checked against the bundle), an image embedded
    (its ``aligned`` crop when given, else its centre square)."""
    if path.suffix.lower() == ".safetensors":
        item = load_latent(path, pipeline.bundle.id, pipeline.latent_shape)
        item.source = item.source or {"latent": path.name}
        return item
    result = pipeline.embed(path if aligned is None else aligned.crop, steps=embed_steps)
    source = {"image": path.name, "embed_steps": embed_steps, "psnr": result.psnr}
    if aligned is not None:
        source["alignment"] = aligned.alignment.to_dict()
    return LatentFile(latent=result.latent, bundle_id=pipeline.bundle.id, source=source)


def edit_latent(pipeline: EditGANPipeline, start: LatentFile, vectors: list[tuple[EditVector, float | None]],
                refine_steps: int, run: dict[str, Any] | None = None, keep_parts: bool = False) -> LatentFile:
    """``start`` with the vectors applied (kept from side effects, refined), recording the edit after any earlier
    ones, and ``run``."""
    if (refine_steps > 0 or keep_parts) and pipeline.can_segment:
        result = pipeline.refine(start.latent, vectors, steps=refine_steps, keep_parts=keep_parts)
        edited, steps_done = result.latent, result.steps_done
    else:
        edited, steps_done = pipeline.apply(start.latent, vectors), 0
    record = EditRecord(tuple((v.name, v.default_scale if s is None else float(s)) for v, s in vectors), steps_done,
                        keep_parts and pipeline.can_segment)
    original = start.original if start.original is not None else start.latent
    return LatentFile(latent=edited, bundle_id=start.bundle_id, original=original, edits=[*start.edits, record],
                      source=start.source, run=run or {})


# ----------------------------------------------------------------------------------- run settings and resuming


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def file_digest(path: Path) -> str:
    return file_sha256(path)[:16]


def run_settings(pipeline: EditGANPipeline, vectors: list[tuple[EditVector, float | None]], embed_steps: int,
                 refine_steps: int, keep_parts: bool = False) -> dict[str, Any]:
    """What decides every output of a run: the bundle (its manifest changes with any component), each vector's
    name, scale and content, the step counts and the side-effect correction (recorded only when on, so runs made
    before it existed still resume). Recorded in each latent file."""
    return {**({"keep_parts": True} if keep_parts else {}),
        "bundle_id": pipeline.bundle.id,
        "bundle_manifest_sha256": file_digest(pipeline.bundle.root / MANIFEST),
        "vectors": [[v.name, v.default_scale if s is None else float(s),
                     _digest(v.delta.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())]
                    for v, s in vectors],
        "embed_steps": embed_steps, "refine_steps": refine_steps,
    }


def output_state(out_png: Path, out_latent: Path, expected: dict[str, Any]) -> str | None:
    """None: not (fully) written yet; "": written with ``expected``; else how its recorded settings differ."""
    if not (out_png.exists() and out_latent.exists()):
        return None
    try:
        recorded = load_latent(out_latent).run
    except LatentError as exc:
        return f"unreadable ({exc})"
    if not recorded:
        return "no settings recorded"
    keys = sorted((expected.keys() | recorded.keys()) - {"shard"})
    differ = [k for k in keys if recorded.get(k) != expected.get(k)]
    return "; ".join(f"{k} was {recorded.get(k)!r}, now {expected.get(k)!r}" for k in differ[:2])


def plan_outputs(inputs: list[tuple[str, Path]], out_dir: Path, common: dict[str, Any]
                 ) -> tuple[list[tuple[str, Path, dict[str, Any]]], int, list[str]]:
    """(inputs to process with their run records, outputs already done, outputs made with other settings)."""
    todo, done, stale = [], 0, []
    for name, path in inputs:
        run = {**common, "input": path.name, "input_sha256": file_digest(path)}
        state = output_state(out_dir / f"{name}.png", out_dir / f"{name}{LATENT_SUFFIX}", run)
        if state == "":
            done += 1
            continue
        if state:
            stale.append(f"{name}: {state}")
        todo.append((name, path, run))
    return todo, done, stale


def apply_folder(pipeline: EditGANPipeline, vectors, todo: list[tuple[str, Path, dict[str, Any]]], out_dir: Path,
                 embed_steps: int, refine_steps: int, photos: PhotoOptions | None = None,
                 keep_parts: bool = False) -> tuple[int, list[str]]:
    """Edit and write every planned input; returns (written, failures)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = photos or PhotoOptions()
    written, failures = 0, []
    for name, path, run in tqdm(todo, desc="editing", unit="input"):
        out_png, out_latent = out_dir / f"{name}.png", out_dir / f"{name}{LATENT_SUFFIX}"
        try:
            aligned = photos.aligned(pipeline, path)
            start = start_latent(pipeline, path, embed_steps, aligned)
            edited = edit_latent(pipeline, start, vectors, refine_steps, run, keep_parts)
            image = pipeline.render(edited.latent, with_labels=False).image
            out_png.unlink(missing_ok=True)  # the PNG is written last: a crash before it leaves the input to redo
            if photos.paste_back:
                write_pasted(pipeline, aligned, start, edited, vectors, out_dir, name)
        except (InputError, OSError, ValueError) as exc:
            failures.append(f"{path.name}: {exc}")
            tqdm.write(f"skipped {path.name}: {exc}")
            continue
        save_latent(edited, out_latent)
        atomic_write(out_png, lambda p, im=image: Image.fromarray(np.asarray(im)).save(p, format="PNG"))
        written += 1
    return written, failures


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    apply.add_argument("--keep-parts", action="store_true",
                       help="correct each face's edit so the other parts keep their colour and size (a few seconds "
                            "per face at 64 px on a CPU; needs the bundle's segmenter)")
    apply.add_argument("--shard", type=parse_shard,
                       help="K/N: process every N-th input starting at the K-th (0-based; default: RANK/WORLD_SIZE "
                            "under torchrun, SLURM_ARRAY_TASK_ID/COUNT in a Slurm array, else all)")
    apply.add_argument("--overwrite", action="store_true",
                       help="redo outputs that OUT_DIR holds from a run with other settings (default: refuse)")
    add_photo_args(apply)
    add_common_args(apply, bundle=True, device=True)
    bundle_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parse_command(parser, argv)
    if args.command == "bundle":
        return bundle_cli.run(args)
    if not args.in_dir.is_dir():
        parser.error(f"{args.in_dir} is not a folder")
    if args.out_dir.resolve() == args.in_dir.resolve():
        parser.error("OUT_DIR must differ from IN_DIR: the outputs would overwrite the inputs")
    shard = args.shard or shard_from_env()
    inputs, clashes = list_inputs(args.in_dir)
    reported_clashes = clashes if shard is None or shard.index == 0 else []  # every worker sees them: one reports
    for line in reported_clashes:
        print(f"skipped {line}", file=sys.stderr)
    mine = shard.take(inputs) if shard else inputs
    args.device = worker_device(args.device)
    pipeline = open_pipeline(args)
    try:
        vectors = resolve_vectors(pipeline, args.vector, args.library)
    except VectorError as exc:
        parser.error(str(exc))
    try:
        photos = PhotoOptions.from_args(args)
    except InputError as exc:
        parser.error(str(exc))
    if args.keep_parts and not pipeline.can_segment:
        parser.error(f"--keep-parts needs a segmenter, and bundle '{pipeline.bundle.id}' has none")
    common = {**run_settings(pipeline, vectors, args.embed_steps, args.refine, args.keep_parts), **photos.settings()}
    todo, done, stale = plan_outputs(mine, args.out_dir, {**common, "shard": str(shard) if shard else None})
    if stale and not args.overwrite:
        print(f"error: {len(stale)} output(s) in {args.out_dir} were made with other settings, e.g. {stale[0]}; "
              f"pass --overwrite to redo them, or choose another OUT_DIR", file=sys.stderr)
        return 2
    written, failures = apply_folder(pipeline, vectors, todo, args.out_dir, args.embed_steps, args.refine, photos,
                                     args.keep_parts)
    return report(written, len(stale), done, failures, reported_clashes,
                  f" (shard {shard}: {len(mine)} of {len(inputs)} inputs)" if shard else "")


def report(written: int, redone: int, done: int, failures: list[str], clashes: list[str], part: str = "") -> int:
    """Print the run's summary; the exit status is 1 when any input was not edited (failed, or left out over a
    name clash), so a script or a job array notices, and 0 when every input has its output."""
    left_out = f", {len(clashes)} left out (name clash)" if clashes else ""
    print(f"{written} written ({redone} redone), {done} already done, {len(failures)} failed{left_out}{part}")
    if failures:
        print(f"failed ({len(failures)}):", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
    return 1 if failures or clashes else 0
