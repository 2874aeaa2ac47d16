"""The annotation workflow measured on a procedural bundle treated as a new model (issue #20's figures).

    python -m editgan_core.annotation.bench --bundle checkpoints/faces64                 # everything
    python -m editgan_core.annotation.bench --bundle checkpoints/faces64 --suggest-only  # the suggestion figure

A copy of the bundle loses its segmentation branch; 16 domain renders are added as photos (embedded,
as a user's photos would be) and their true label maps saved as the user's annotations. Reported:
the suggestion figure (fraction of pixels whose suggested region, given its majority true class, is
already right; beside it the same for k-means on pixel colours), then the studio's training path
(train, install, cross-validate) with its wall and CPU time and peak RSS, and the mIoU the new
segmenter reaches on held-out renders (embedded as ``train.segmenter --eval`` does), beside the mIoU of
the bundle's own segmenter, made by ``train.segmenter`` from the same 16 renders, on the same embeddings.
"""

from __future__ import annotations

import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from editgan_core.annotation.sources import add_photo
from editgan_core.annotation.store import FOLDER, AnnotationStore
from editgan_core.annotation.suggest import DEFAULT_REGIONS, cluster_pixels, region_purity, suggest
from editgan_core.annotation.training import TrainSettings, install_segmenter, train_segmenter
from editgan_core.bundle import Bundle, write_manifest
from editgan_core.cli_common import command_parser, parse_command, require_domain
from editgan_core.pipeline import EditGANPipeline
from editgan_core.scoring import confusion, iou_per_class
from editgan_core.train.segmenter import ANNOTATION_SEEDS, EVAL_SEED_START, annotation_count


def as_new_model(source: Bundle, folder: Path) -> Path:
    """A copy of the bundle without its segmentation branch or annotations: what a freshly imported model is."""
    root = folder / source.root.name
    shutil.copytree(source.root, root, ignore=shutil.ignore_patterns(FOLDER, "segmenter.safetensors"))
    manifest = {k: v for k, v in source.manifest.items() if k != "segmenter"}
    write_manifest(root, manifest)
    return root


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_suggestions(pipe: EditGANPipeline, store: AnnotationStore, truths: dict[str, np.ndarray],
                        regions: int) -> dict:
    features, colours = [], []
    for name, truth in truths.items():
        found = suggest(pipe, store.latent(name), regions)
        features.append(region_purity(found.regions, truth))
        pixels = store.image(name).reshape(-1, 3).astype(np.float32)
        colours.append(region_purity(cluster_pixels(pixels, regions).reshape(truth.shape), truth))
    return {"regions": regions, "feature_clusters": round(float(np.mean(features)), 4),
            "feature_clusters_min": round(float(np.min(features)), 4),
            "colour_clusters": round(float(np.mean(colours)), 4)}


def compare_on_held_out(pipe: EditGANPipeline, baseline, domain, seeds: range, steps: int) -> dict:
    """mIoU of the new segmenter and of ``baseline`` on the same embeddings of held-out renders."""
    names = [c.name for c in pipe.bundle.classes]
    conf = {"studio": np.zeros((len(names),) * 2, np.int64), "train_segmenter": np.zeros((len(names),) * 2, np.int64)}
    psnr = []
    for seed in tqdm(seeds, desc="held-out renders", unit="img"):
        face = domain.render_face(seed, pipe.resolution)
        result = pipe.embed(face.image, steps=steps)
        psnr.append(result.psnr)
        with torch.no_grad():
            features = pipe.generator.synthesis(pipe.check_latent(result.latent), noise=pipe.noise,
                                                return_features=True).features
        for key, model in (("studio", pipe.segmenter), ("train_segmenter", baseline)):
            conf[key] += confusion(model.predict(features)[0].cpu().numpy(), face.labels, len(names))
    report = {"images": len(seeds), "embed_steps": steps, "psnr": round(float(np.mean(psnr)), 2)}
    for key, matrix in conf.items():
        ious = iou_per_class(matrix)
        report[key] = {"miou": round(float(np.nanmean(ious)), 4),
                       "per_class": {n: None if np.isnan(v) else round(float(v), 3)
                                     for n, v in zip(names, ious, strict=True)}}
    return report


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, bundle=True, device=True)
    p.add_argument("--count", type=annotation_count, default=len(ANNOTATION_SEEDS), help="annotated renders")
    p.add_argument("--embed-steps", type=int, default=100)
    p.add_argument("--regions", type=int, default=DEFAULT_REGIONS)
    p.add_argument("--eval", type=int, default=40, help="held-out renders for the mIoU")
    p.add_argument("--eval-embed-steps", type=int, default=100)
    p.add_argument("--suggest-only", action="store_true")
    defaults = TrainSettings()
    p.add_argument("--members", type=int, default=defaults.members)
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--pixels", type=int, default=defaults.pixels)
    args = parse_command(p, argv)
    source = Bundle.load(args.bundle)
    domain = require_domain(p, source, "the true label maps come from the bundle's procedural domain")
    with tempfile.TemporaryDirectory(prefix="editgan-annotate-bench-") as tmp:
        pipe = EditGANPipeline.from_pretrained(as_new_model(source, Path(tmp)), device=args.device)
        store = AnnotationStore(Path(tmp) / FOLDER, pipe.bundle)
        start, cpu0 = time.perf_counter(), cpu_seconds()
        truths = {}
        for seed in tqdm(list(ANNOTATION_SEEDS)[:args.count], desc="add renders as photos", unit="img"):
            face = domain.render_face(seed, pipe.resolution)
            truths[add_photo(store, pipe, face.image, args.embed_steps, f"seed{seed}").name] = face.labels
        report = {"annotations": len(truths), "embed_seconds": round(time.perf_counter() - start, 1),
                  "suggestions": measure_suggestions(pipe, store, truths, args.regions)}
        if not args.suggest_only:
            for name, truth in truths.items():
                store.save_labels(name, truth)
            _, latents, labels = zip(*store.training_set(), strict=True)
            settings = TrainSettings(members=args.members, steps=args.steps, pixels=args.pixels)
            bar = tqdm(total=settings.total_steps(len(labels)), desc="train + cross-validate", unit="step")
            result = train_segmenter(pipe, latents, labels, settings, progress=lambda s: bar.update(1),
                                     on_trained=lambda r: install_segmenter(pipe, r))
            bar.close()
            report.update(studio_seconds=round(time.perf_counter() - start, 1),
                          studio_cpu_seconds=round(cpu_seconds() - cpu0, 1), settings=vars(settings),
                          cv_miou=round(result.cv.miou, 4),
                          cv_per_class={k: None if v is None else round(v, 3) for k, v in result.cv.per_class.items()})
            if source.has("segmenter") and args.eval:
                report["held_out"] = compare_on_held_out(pipe, source.load_segmenter().to(pipe.device), domain,
                                                         range(EVAL_SEED_START, EVAL_SEED_START + args.eval),
                                                         args.eval_embed_steps)
        report["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
