"""Pivotal tuning benchmark: reconstruction and cost with and without it, and whether presets still work.

    python -m editgan_core.eval.pti --bundle checkpoints/faces64 --n 10 --tune-steps 100

For ``n`` held-out faces of the bundle's procedural domain (the photos the demo model was trained on,
seeds disjoint from training and presets; plus, with scikit-image, its ``astronaut`` photo for PSNR
and time only): embed (``--embed-steps``), then tune a copy of the generator around the latent. Prints
PSNR and seconds per photo for both, and, for the preset (``--vector``), the attribute judge's reading
before and after applying it on the original model and on the tuned copy, with the success test of
``editgan_core.eval.edit`` (moved by ``--success-delta`` of the attribute's range towards its target).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from editgan_core.cli_common import command_parser, open_pipeline, parse_command, require_domain
from editgan_core.eval.edit import SuccessTest, read_attribute
from editgan_core.eval.kid import DEFAULT_ATTRIBUTE_NET
from editgan_core.losses import image_psnr
from editgan_core.models.attribute_net import AttributeNet
from editgan_core.pipeline import EditGANPipeline, prepare_image
from editgan_core.train.presets import PRESETS
from editgan_core.vectors import VectorLibrary

FIRST_SEED = 500_000  # domain faces of this bench: away from the GAN's, the presets' and eval.edit's seeds


def tune_photo(pipe: EditGANPipeline, image: np.ndarray, embed_steps: int, tune_steps: int) -> dict:
    """Embed and tune one photo; PSNRs, seconds and both pipelines' latent."""
    pixels = prepare_image(image, pipe.resolution)
    start = time.perf_counter()
    embedded = pipe.embed(pixels, steps=embed_steps, report=False)
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    tuned = pipe.with_tuned(pipe.pivotal_tune(pixels, embedded.latent, steps=tune_steps).state)
    tune_s = time.perf_counter() - start
    return {"latent": embedded.latent, "tuned": tuned, "psnr": embedded.psnr, "embed_s": embed_s,
            "psnr_tuned": image_psnr(tuned.render(embedded.latent, with_labels=False).image, pixels),
            "tune_s": tune_s}


def judge_edit(pipe: EditGANPipeline, latent: torch.Tensor, vector, scale: float, judge, attribute: str,
               test_for) -> tuple[float, float, bool]:
    """The judge's reading before and after the preset, and whether it passes the success test."""
    before = read_attribute(judge, pipe.render(latent, with_labels=False).image, attribute)
    after = read_attribute(judge, pipe.render(pipe.apply(latent, [(vector, scale)]), with_labels=False).image,
                           attribute)
    test: SuccessTest = test_for(before)
    return before, after, test.passes(after)


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, bundle=True, device=True)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--embed-steps", type=int, default=100)
    p.add_argument("--tune-steps", type=int, default=100)
    p.add_argument("--vector", default="smile", choices=[s.name for s in PRESETS])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--judge", type=Path, default=DEFAULT_ATTRIBUTE_NET, help="attribute net (safetensors)")
    p.add_argument("--success-delta", type=float, default=0.15, help="fraction of the attribute range")
    args = parse_command(p, argv)
    pipe = open_pipeline(args)
    domain = require_domain(p, pipe.bundle, "the benchmark's photos are faces of the bundle's procedural domain")
    spec = next(s for s in PRESETS if s.name == args.vector)
    vector = VectorLibrary(Path("/nonexistent"), pipe.bundle.id, pipe.latent_shape,
                           read_only_roots=[pipe.bundle.vectors_dir]).get(args.vector)
    judge = AttributeNet.load(args.judge).eval()
    low, high = domain.ATTRIBUTE_RANGES[spec.attribute]
    sign = 1.0 if spec.value >= 0.5 * (low + high) else -1.0

    def test_for(before: float) -> SuccessTest:
        return SuccessTest(before, spec.value, sign, args.success_delta * (high - low))

    rows = []
    for seed in tqdm(range(FIRST_SEED, FIRST_SEED + args.n), desc="pti", unit="photo"):
        face = domain.render(domain.sample_attributes(seed), pipe.resolution).image
        row = tune_photo(pipe, face, args.embed_steps, args.tune_steps)
        for name, model in (("original", pipe), ("tuned", row["tuned"])):
            row[name] = judge_edit(model, row["latent"], vector, args.scale, judge, spec.attribute, test_for)
        rows.append(row)
    print(f"bundle={pipe.bundle.id} photos={args.n} embed_steps={args.embed_steps} tune_steps={args.tune_steps} "
          f"device={pipe.device} threads={torch.get_num_threads()} lpips={pipe.lpips is not None}")
    print(f"PSNR dB: embedded {np.mean([r['psnr'] for r in rows]):.2f}, "
          f"+ pivotal tuning {np.mean([r['psnr_tuned'] for r in rows]):.2f}")
    print(f"seconds per photo: embedding {np.mean([r['embed_s'] for r in rows]):.2f}, "
          f"pivotal tuning {np.mean([r['tune_s'] for r in rows]):.2f} more")
    for name in ("original", "tuned"):
        moves = [sign * (r[name][1] - r[name][0]) for r in rows]
        success = 100 * np.mean([r[name][2] for r in rows])
        print(f"{args.vector}×{args.scale:g} on the {name} model: judge's {spec.attribute} moves "
              f"{np.mean(moves):+.3f} towards {spec.value:g} (mean), success {success:.0f} %")
    try:
        from skimage import data
    except ImportError:
        return
    row = tune_photo(pipe, data.astronaut(), args.embed_steps, args.tune_steps)
    print(f"astronaut: PSNR {row['psnr']:.2f} → {row['psnr_tuned']:.2f} dB; {row['embed_s']:.2f} s + "
          f"{row['tune_s']:.2f} s")


if __name__ == "__main__":
    main()
