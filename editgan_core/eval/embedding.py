"""Embedding benchmark on held-out rendered faces: PSNR, time and segmentation mIoU per step count.

    python -m editgan_core.eval.embedding --bundle checkpoints/faces64 --n 100 --steps 0 50 100

Each face (seeds 0..n-1: disjoint from GAN training, annotations and presets) is embedded with the
encoder only (0 steps) and with N optimisation steps; the reconstruction's PSNR, the seconds per
embedding and the mIoU of the segmentation branch on the embedding against the true label map are
reported per step count, then the per-class IoU of the last one, and, as a yardstick, the mIoU of
the true maps against themselves moved by one pixel.

``--compare-size S`` also reports the PSNR with reconstruction and render both area-resized to S px, so
a 128-px bundle can be compared with a 64-px one on the same detail (``--compare-size 64``).

``--range-check K`` also embeds K of the generator's own samples, faces it can certainly draw. If
those come back near-perfectly while the renders do not, the optimiser is not what limits the
renders' embeddings: the generator cannot draw them exactly.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from tqdm import tqdm

from editgan_core.cli_common import command_parser, open_pipeline, parse_command, require_domain
from editgan_core.pipeline import EditGANPipeline
from editgan_core.scoring import confusion, evaluate_embedding, iou_per_class, shifted_miou

COMPARE_SIZES = (16, 32, 64, 128, 256, 512, 1024)  # --compare-size: the resolutions bundles come in


def evaluate_range(pipeline: EditGANPipeline, seeds: range, steps: int, progress: bool = True) -> dict[str, float]:
    """Embed generator samples: mean PSNR, and mIoU of the embedding's labels against the sample's own."""
    num_classes = len(pipeline.bundle.classes)
    psnr, conf = [], np.zeros((num_classes, num_classes), np.int64)
    for seed in tqdm(seeds, desc="embed samples", unit="face", disable=not progress):
        sample = pipeline.render(pipeline.sample_latent(seed))
        result = pipeline.embed(sample.image, steps=steps)
        psnr.append(result.psnr)
        if sample.labels is not None:
            conf += confusion(result.render.labels, sample.labels, num_classes)
    return {"psnr": float(np.mean(psnr)),
            "miou": float(np.nanmean(iou_per_class(conf))) if conf.any() else float("nan")}


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, bundle=True, device=True)
    p.add_argument("--n", type=int, default=100, help="held-out faces (seeds 0..n-1)")
    p.add_argument("--steps", type=int, nargs="+", default=[0, 50, 100], help="optimisation steps after the encoder")
    p.add_argument("--range-check", type=int, default=0, metavar="K",
                   help="also embed K generator samples (seeds 1000000..), faces the generator can draw")
    p.add_argument("--compare-size", type=int, choices=COMPARE_SIZES, metavar="S",
                   help="also report the PSNR at S px, both pictures area-resized (S: one of %(choices)s)")
    p.add_argument("--json", action="store_true", help="also print the full report as JSON")
    args = parse_command(p, argv)
    pipeline = open_pipeline(args)
    domain = require_domain(p, pipeline.bundle, "this benchmark renders faces of a procedural domain")
    report = evaluate_embedding(pipeline, domain, range(args.n), args.steps, compare_size=args.compare_size)
    print(f"bundle={pipeline.bundle.id} faces={args.n} device={pipeline.device} threads={torch.get_num_threads()} "
          f"lpips={'yes' if pipeline.lpips is not None else 'no (L2 only)'}")
    at = f"@{args.compare_size}px" if args.compare_size else ""
    print(f"{'steps':>6} {'PSNR dB':>8} {'s/image':>8} {'mIoU':>6}" + (f" {'PSNR' + at:>12}" if at else ""))
    for steps, r in report.items():
        print(f"{steps:>6} {r['psnr']:8.2f} {r['seconds']:8.3f} {r['miou']:6.3f}"
              + (f" {r['psnr_at']:12.2f}" if at else ""))
    last = report[args.steps[-1]]["per_class"]
    print(f"per-class IoU at {args.steps[-1]} steps: " + ", ".join(f"{k} {v:.2f}" for k, v in last.items()))
    truth = [domain.render_face(seed, pipeline.resolution).labels for seed in range(args.n)]
    yardstick, _ = shifted_miou(truth, len(pipeline.bundle.classes))
    print(f"yardstick: the true label maps moved by one pixel score mIoU {yardstick:.3f} against themselves")
    if args.range_check:
        steps = args.steps[-1]
        in_range = evaluate_range(pipeline, range(10**6, 10**6 + args.range_check), steps)
        report["range_check"] = in_range
        print(f"range check, {args.range_check} generator samples embedded with {steps} steps: "
              f"{in_range['psnr']:.2f} dB, mIoU {in_range['miou']:.3f} against the samples' own labels")
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
