"""Train the segmentation branch from K annotated images (EditGAN/DatasetGAN: 16 are enough).

    python -m editgan_core.train.segmenter --bundle checkpoints/faces64            # 16 rendered faces
    python -m editgan_core.train.segmenter --bundle mybundle --annotations DIR     # your own labels

Each annotation is embedded into W+ (encoder + optimisation), the generator's feature maps at that
latent are paired with the label map, and the pixel-MLP ensemble is trained on random pixels, so
memory stays small. ``--annotations DIR`` reads ``NAME.png|jpg`` with ``NAME.labels.png``: class ids as
grey values, or a picture in the class colours (snapped to the bundle's classes; other colours are
refused). Every file is checked (size, colours, classes) before anything is embedded, and all the bad
ones are named. A ``NAME.latent.safetensors`` beside an image (the studio's annotation folder,
``<bundle>/annotations``) is used as its latent instead of embedding it. The result is written into
the bundle (``segmenter.safetensors``) and the manifest updated; ``--eval N`` then reports mIoU on N
held-out rendered faces.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from editgan_core.annotation.folder import Annotation, read_folder
from editgan_core.annotation.labelfiles import LabelFileError
from editgan_core.bundle import write_manifest
from editgan_core.cli_common import command_parser, open_pipeline, parse_command, require_domain
from editgan_core.pipeline import EditGANPipeline
from editgan_core.scoring import evaluate_embedding
from editgan_core.train.pixel_ensemble import TrainProgress, train_ensemble

ANNOTATION_SEEDS = range(100, 116)  # held out from GAN training (seeds < 1e6) and from evaluation (0..99)
EVAL_SEED_START = 0


def annotation_count(text: str) -> int:
    """argparse type for ``--count``: the rendered annotations are a fixed, held-out seed range, so a larger
    count is refused rather than silently cut to it."""
    count = int(text)
    if not 1 <= count <= len(ANNOTATION_SEEDS):
        raise argparse.ArgumentTypeError(
            f"{count}: the rendered annotations are seeds {ANNOTATION_SEEDS.start}..{ANNOTATION_SEEDS.stop - 1}, "
            f"so give 1 to {len(ANNOTATION_SEEDS)} "
            "(to train on more labelled images: train.segmenter --annotations DIR)")
    return count


def domain_annotations(domain_name: str, size: int, count: int) -> list[Annotation]:
    from editgan_core.domains import get_domain

    domain = get_domain(domain_name)
    return [Annotation(f"seed{seed}", s.image, s.labels, None, "grey ids")
            for seed, s in ((seed, domain.render_face(seed, size)) for seed in list(ANNOTATION_SEEDS)[:count])]


def embed_annotations(pipeline: EditGANPipeline, annotations: list[Annotation],
                      steps: int) -> tuple[list, list, list[float]]:
    """Features and labels per annotation; images without a latent are embedded (their PSNR is returned)."""
    features, labels, psnrs = [], [], []
    for item in tqdm(annotations, desc="embed annotations", unit="img"):
        latent = item.latent
        if latent is None:
            result = pipeline.embed(item.image, steps=steps)
            latent = result.latent
            psnrs.append(result.psnr)
        with torch.no_grad():
            out = pipeline.generator.synthesis(latent.to(pipeline.device), noise=pipeline.noise,
                                               return_features=True)
        features.append([f.detach() for f in out.features])
        labels.append(torch.from_numpy(item.labels.astype(np.int64)))
    return features, labels, psnrs


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, bundle=True, device=True)
    p.add_argument("--annotations", type=Path, help="folder of NAME.png + NAME.labels.png (default: rendered faces)")
    p.add_argument("--count", type=annotation_count, default=len(ANNOTATION_SEEDS),
                   help="number of rendered annotations (domain bundles)")
    p.add_argument("--embed-steps", type=int, default=100)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--steps", type=int, default=1500, help="Adam steps per ensemble member")
    p.add_argument("--pixels", type=int, default=4096, help="pixels per step")
    p.add_argument("--hidden", type=int, nargs=2, help="MLP hidden widths (default: the official ones)")
    p.add_argument("--class-balance", type=float, default=0.0,
                   help="0 = uniform pixels (DatasetGAN); up to 1 = every class drawn equally often")
    p.add_argument("--eval", type=int, default=0, help="report mIoU on this many held-out rendered faces")
    p.add_argument("--eval-embed-steps", type=int, default=50)
    args = parse_command(p, argv)
    start = time.perf_counter()
    pipeline = open_pipeline(args)
    bundle = pipeline.bundle
    if args.eval:  # checked before the long work: held-out faces come from the bundle's domain
        eval_domain = require_domain(p, bundle, "--eval renders held-out faces of a procedural domain")
    if args.annotations:
        try:
            pairs = read_folder(args.annotations, bundle)
        except LabelFileError as exc:
            p.error(str(exc))
    elif bundle.domain:
        pairs = domain_annotations(bundle.domain, pipeline.resolution, args.count)
    else:
        p.error("this bundle has no procedural domain: pass --annotations DIR")
    features, labels, psnrs = embed_annotations(pipeline, pairs, args.embed_steps)
    bar = tqdm(total=args.members * args.steps, desc="train ensemble", unit="step")

    def progress(info: TrainProgress) -> None:
        bar.update(1)
        if info.step % 50 == 0:
            bar.set_postfix(member=info.member + 1, loss=f"{info.loss:.3f}", acc=f"{info.accuracy:.3f}")

    ensemble = train_ensemble(features, labels, len(bundle.classes), pipeline.generator.feature_channels(),
                              members=args.members, steps=args.steps, pixels_per_step=args.pixels,
                              hidden=args.hidden, class_balance=args.class_balance, progress=progress)
    bar.close()
    ensemble.save(bundle.root / "segmenter.safetensors")
    train_time = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    manifest = dict(bundle.manifest)
    manifest["segmenter"] = {"file": "segmenter.safetensors", "annotations": len(pairs),
                             "embed_psnr": round(float(np.mean(psnrs)), 2) if psnrs else None, "members": args.members,
                             "class_balance": args.class_balance}
    report = {"annotations": len(pairs), "train_seconds": round(train_time, 1), "peak_rss_gib": round(peak_gib, 2),
              "annotation_psnr": round(float(np.mean(psnrs)), 2) if psnrs else None}
    if args.eval:
        pipeline.segmenter = ensemble.to(pipeline.device)
        steps = args.eval_embed_steps
        result = evaluate_embedding(pipeline, eval_domain, range(EVAL_SEED_START, EVAL_SEED_START + args.eval),
                                    [steps])[steps]
        manifest["segmenter"]["eval_miou"] = round(result["miou"], 4)
        report["eval"] = {"miou": result["miou"], "per_class": result["per_class"], "images": args.eval,
                          "embed_steps": steps, "psnr": result["psnr"]}
    write_manifest(bundle.root, manifest)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
