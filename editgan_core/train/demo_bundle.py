"""Assemble the shipped demo bundle from a GAN run: generator, encoder, segmenters, presets, preview, card.

    python -m editgan_core.train.demo_bundle --run runs/faces64 --out checkpoints/faces64 \\
        --encoder-run runs/enc64 --encoder-kimg 10 --eval 100

Each stage is the project's own training command, run in order against the bundle being built;
the encoder run is resumed when it exists (warm start after more GAN training). A GAN run trained
with ``--recon`` already holds an encoder trained alongside its generator: ``--encoder-from-run``
ships that one instead of training another. A run grown with its copied layers held (``train.gan
--freeze-grown inf``) keeps the small model's W space: ``--presets-from`` carries that bundle's vectors over.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from editgan_core import bundle as bundle_mod
from editgan_core.bundle_build import preview_grid
from editgan_core.cli_common import command_parser, parse_command
from editgan_core.domains import get_domain
from editgan_core.train import grow, presets


def preset_vectors(args, threads: list[str]) -> None:
    """Stage 4: the small model's vectors carried over (``--presets-from``), else the presets learned anew."""
    if args.presets_from:
        small = bundle_mod.Bundle.load(args.presets_from)
        built = bundle_mod.Bundle.load(args.out)
        carried = grow.carry_bundle_vectors(small, built)
        print(f"[4/5] {len(carried)} vectors carried over from {small.id} (same W space: its layers were held)")
        return
    print("[4/5] preset editing vectors")
    steps = [] if args.preset_steps is None else ["--steps", str(args.preset_steps)]
    faces = [] if args.preset_faces is None else ["--faces", str(args.preset_faces)]
    presets.main(["--bundle", str(args.out), *faces, *steps, *threads])


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(__doc__)
    p.add_argument("--run", type=Path, required=True, help="GAN training run folder")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to (re)build")
    p.add_argument("--id", default="faces64-demo")
    p.add_argument("--title", default="Demo faces (64 px, procedural domain)")
    p.add_argument("--domain", default="faces")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--encoder-run", type=Path, help="encoder run folder (resumed if present)")
    source.add_argument("--encoder-from-run", action="store_true",
                        help="ship the encoder the GAN run trained alongside its generator (train.gan --recon)")
    p.add_argument("--encoder-kimg", type=float, default=10.0, help="total encoder kimg for this run folder")
    p.add_argument("--segmenter-class-balance", type=float, default=0.5,
                   help="class-balanced pixel draws, so the small classes (eyebrows) are seen often enough")
    p.add_argument("--segmenter-steps", type=int, default=1500)
    p.add_argument("--image-segmenter-steps", type=int, default=900,
                   help="steps of the pixel segmenter distilled from the branch (train.image_segmenter); 0: none")
    p.add_argument("--embed-lr", type=float, default=0.2,
                   help="the bundle's embedding learning rate (on the demo model 0.2 reconstructs better than the "
                        "projector's 0.1: docs/results.md), used by every later stage")
    p.add_argument("--preset-faces", type=int,
                   help="faces each preset is learned on together (default: each preset's own; more carry over "
                        "better: docs/results.md)")
    p.add_argument("--preset-steps", type=int,
                   help="steps of the shared optimisation per preset (default: each preset's method's own)")
    p.add_argument("--eval", type=int, default=100, help="held-out faces for the segmentation mIoU")
    p.add_argument("--presets-from", type=Path, metavar="BUNDLE",
                   help="the bundle this run was grown from with its layers held (train.gan --freeze-grown inf): "
                        "carry its vectors over instead of learning new presets")
    return p


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    args = parse_command(p, argv)
    co_trained = args.run / "encoder.safetensors"
    if args.encoder_from_run and not co_trained.is_file():
        p.error(f"{args.run} has no encoder.safetensors: train the GAN with --recon, or give --encoder-run")
    threads = ["--threads", str(args.threads)] if args.threads else []
    domain = get_domain(args.domain)
    classes = [{"id": c.id, "name": c.name, "color": list(c.color)} for c in domain.CLASSES]
    groups = {k: list(v) for k, v in domain.EDIT_CLASSES.items()}
    print(f"[1/5] generator from {args.run}")
    bundle_mod.build_from_run(args.run, args.out, args.id, args.title, args.domain, classes, groups)
    manifest = dict(bundle_mod.Bundle.load(args.out).manifest)
    manifest["embedding"] = {"lr": args.embed_lr}
    if args.presets_from:
        manifest["generator"] = {**manifest["generator"], "grown_from": bundle_mod.Bundle.load(args.presets_from).id}
    if hasattr(domain, "framing_entry"):  # how photos are aligned to the renders' framing (``photos.framing``)
        manifest.update(framing=domain.framing_entry(), background=list(domain.BACKGROUND))
    bundle_mod.write_manifest(args.out, manifest)

    manifest = dict(bundle_mod.Bundle.load(args.out).manifest)
    if args.encoder_from_run:
        print(f"[2/5] encoder trained alongside the generator ({co_trained})")
        encoder_file, provenance = co_trained, {"trained": "with the generator (train.gan --recon)"}
    else:
        print(f"[2/5] encoder ({args.encoder_kimg} kimg in {args.encoder_run})")
        from editgan_core.train import encoder as encoder_train

        encoder_train.main(["--generator", str(args.out), "--out", str(args.encoder_run), "--real-domain",
                            args.domain, "--kimg", str(args.encoder_kimg), *threads])
        encoder_file, provenance = args.encoder_run / "encoder.safetensors", {"kimg": args.encoder_kimg}
    shutil.copyfile(encoder_file, args.out / "encoder.safetensors")
    manifest["encoder"] = {"file": "encoder.safetensors", **provenance}
    bundle_mod.write_manifest(args.out, manifest)

    print("[3/5] segmentation branch from 16 annotated renders")
    from editgan_core.train import segmenter as segmenter_train

    segmenter_train.main(["--bundle", str(args.out), "--steps", str(args.segmenter_steps), "--eval", str(args.eval),
                          "--class-balance", str(args.segmenter_class_balance), *threads])
    if args.image_segmenter_steps:
        from editgan_core.train import image_segmenter

        print("[3/5] pixel segmenter distilled from the branch (the edit objective's second reader)")
        image_segmenter.main(["--bundle", str(args.out), "--steps", str(args.image_segmenter_steps), "--replace",
                              *threads])

    preset_vectors(args, threads)

    print("[5/5] preview grid and model card")
    print(f"wrote {preview_grid(args.out)} and {bundle_mod.Bundle.load(args.out).write_model_card()}")


if __name__ == "__main__":
    main()
