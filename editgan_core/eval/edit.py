"""Edit benchmark on held-out rendered faces (the smile benchmark of the EditGAN paper, demo domain).

    python -m editgan_core.eval.edit --bundle checkpoints/faces64 --vector smile --n 100 --refine 0 30

For each face (seeds 0..n-1, disjoint from the preset, annotation and GAN-training seeds): render
it, embed it, apply the vector at ``--scale`` (default: the vector's own default strength, as the studio
applies it) and refine for each requested number of steps, then
report
- attribute success: the attribute net (the domain's judge) sees the attribute move by at least
  ``--success-delta`` of its range towards the preset's target, or already within that of it;
- preservation: mean absolute pixel change outside the edit region r (0..1 units);
- region IoU: labels of the edited image vs the face re-rendered with the target attribute, on
  the vector's classes inside r;
- timings: apply + render, refinement.

``--ceiling`` also reports what bounds the success rate whatever the vector: the *target* face (the
same face re-rendered with the preset's attribute value) embedded like the original and judged by the
same test, and the spread (std) of the judge's reading of the attribute over generator samples
(truncation 1) against renders. A generator that cannot draw the attribute's ends fails both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from tqdm import tqdm

from editgan_core.cli_common import command_parser, open_pipeline, parse_command, require_domain
from editgan_core.editing import edit_region, region_iou
from editgan_core.eval.kid import DEFAULT_ATTRIBUTE_NET
from editgan_core.eval.timing import median_time
from editgan_core.models.attribute_net import AttributeNet
from editgan_core.pipeline import EditGANPipeline, Render
from editgan_core.train.presets import PRESETS, PresetSpec
from editgan_core.utils import to_tensor
from editgan_core.vectors import EditVector, VectorLibrary

SPREAD_SEED = 10**6  # latent seeds of the spread's generator samples
SPREAD_N = 200  # generator samples and renders the spread is taken over


def edit_step_ratio(pipeline: EditGANPipeline, latent: torch.Tensor, painted: np.ndarray, forward,
                    rounds: int = 9, steps: int = 16) -> tuple[float, float, float]:
    """Median over rounds of (mean edit step / median generator forward), each round measured together.

    The speed of a shared box drifts within seconds, so a forward timed now and steps timed a few
    seconds later gave ratios far apart for the same code (docs/results.md). Steps are timed between
    progress callbacks: ``steps`` whole steps (forward, region segmentation, losses, backward, Adam),
    a multiple of the lazy encoder term's period so its share is counted. Returns (step, forward, ratio).
    """
    step_times, forward_times, ratios = [], [], []
    for _ in range(rounds):
        forward_time = median_time(forward, 5, device=pipeline.device)
        stamps: list[float] = []
        pipeline.learn_edit(latent, painted, steps=steps + 1,
                            callback=lambda _info, s=stamps: s.append(time.perf_counter()))
        step_time = (stamps[-1] - stamps[0]) / steps
        step_times.append(step_time)
        forward_times.append(forward_time)
        ratios.append(step_time / forward_time)
    return float(np.median(step_times)), float(np.median(forward_times)), float(np.median(ratios))


@dataclass(frozen=True)
class SuccessTest:
    """The attribute moved by at least ``margin`` towards ``value`` from ``before``, or is within it of ``value``."""

    before: float
    value: float
    sign: float
    margin: float

    def passes(self, score: float) -> bool:
        return self.sign * (score - self.before) >= self.margin or abs(score - self.value) <= self.margin


def read_attribute(judge, image: np.ndarray, attribute: str) -> float:
    with torch.no_grad():
        return judge.predict(to_tensor(image[None]))[attribute].item()


def attribute_spread(pipeline: EditGANPipeline, judge, domain, attribute: str,
                     n: int = SPREAD_N) -> tuple[float, float]:
    """Std of the judge's ``attribute`` over ``n`` generator samples (truncation 1) and ``n`` held-out renders."""
    samples = [read_attribute(judge, pipeline.render(pipeline.sample_latent(SPREAD_SEED + s, truncation=1.0),
                                                     with_labels=False).image, attribute)
               for s in tqdm(range(n), desc="judge spread", unit="sample")]
    renders = [read_attribute(judge, domain.render(domain.sample_attributes(s), pipeline.resolution).image, attribute)
               for s in range(n)]
    return float(np.std(samples)), float(np.std(renders))


def timing_report(pipeline: EditGANPipeline, vector, repeats: int = 5, long_repeats: int = 3,
                  rounds: int = 9, refine_steps: int = 30, edit_steps: int = 100) -> dict[str, float]:
    """Seconds for the interactive operations on one face, next to one generator forward.

    The long operations are timed ``long_repeats`` times too: single runs on a shared 2-core box
    differed by a third from one call to the next.
    """
    latent = pipeline.sample_latent(0)
    labels = pipeline.render(latent).labels
    painted = labels.copy()
    painted[labels == vector.class_ids[0]] = 1 if vector.class_ids[0] != 1 else 2  # paint a part away
    if (painted == labels).all():
        painted[: labels.shape[0] // 8] = vector.class_ids[0]
    noise = pipeline.noise
    w = latent.to(pipeline.device)

    def forward():
        with torch.no_grad():
            pipeline.generator.synthesis(w, noise=noise)

    def apply_and_render():
        pipeline.render(pipeline.apply(latent, [(vector, 1.0)]))

    device = pipeline.device  # on CUDA, median_time waits for the queued kernels
    report = {"apply_and_render": median_time(apply_and_render, repeats, device=device)}
    report[f"refine_{refine_steps}"] = median_time(
        lambda: pipeline.refine(latent, [(vector, 1.0)], steps=refine_steps), long_repeats, device=device)
    report[f"learn_edit_{edit_steps}"] = median_time(
        lambda: pipeline.learn_edit(latent, painted, steps=edit_steps), long_repeats, device=device)
    step, forward_time, ratio = edit_step_ratio(pipeline, latent, painted, forward, rounds=rounds)
    report.update(generator_forward=forward_time, edit_step=step, edit_step_over_forward=ratio)
    return report


@dataclass
class EditBenchmark:
    """One preset vector judged on held-out faces of the bundle's domain."""

    pipeline: EditGANPipeline
    judge: AttributeNet
    domain: ModuleType
    spec: PresetSpec
    vector: EditVector
    scale: float
    embed_steps: int
    success_delta: float  # fraction of the attribute's range

    def success_test(self, score_before: float) -> SuccessTest:
        low, high = self.domain.ATTRIBUTE_RANGES[self.spec.attribute]
        sign = 1.0 if self.spec.value >= 0.5 * (low + high) else -1.0
        return SuccessTest(score_before, self.spec.value, sign, self.success_delta * (high - low))

    def face(self, seed: int, refine: list[int], ceiling: bool) -> tuple[dict[int, dict[str, float]], bool | None]:
        """Per refinement step count: success, change outside r, region IoU, seconds; and (with ``ceiling``)
        whether the embedded target face passes the same test."""
        pipeline, attribute = self.pipeline, self.spec.attribute
        attrs = self.domain.sample_attributes(seed)
        face = self.domain.render(attrs, pipeline.resolution)
        target = self.domain.render({**attrs, attribute: self.spec.value}, pipeline.resolution)
        latent = pipeline.embed(face.image, steps=self.embed_steps).latent
        before = pipeline.render(latent)
        test = self.success_test(read_attribute(self.judge, before.image, attribute))
        target_passes = None
        if ceiling:
            embedded_target = pipeline.embed(target.image, steps=self.embed_steps).latent
            target_image = pipeline.render(embedded_target, with_labels=False).image
            target_passes = test.passes(read_attribute(self.judge, target_image, attribute))
        return {steps: self.edit(latent, before, target.labels, test, steps) for steps in refine}, target_passes

    def edit(self, latent: torch.Tensor, before: Render, target_labels: np.ndarray, test: SuccessTest,
             steps: int) -> dict[str, float]:
        pipeline, vector = self.pipeline, self.vector
        start = time.perf_counter()
        if steps:
            after = pipeline.refine(latent, [(vector, self.scale)], steps=steps).render
        else:
            after = pipeline.render(pipeline.apply(latent, [(vector, self.scale)]))
        seconds = time.perf_counter() - start
        region = edit_region(before.labels, after.labels, vector.class_ids)
        diff = np.abs(after.image.astype(np.float32) - before.image.astype(np.float32)).mean(2) / 255
        return {"success": test.passes(read_attribute(self.judge, after.image, self.spec.attribute)),
                "outside": float(diff[~region].mean()) if (~region).any() else 0.0,
                "iou": region_iou(after.labels, target_labels, region, vector.class_ids), "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, bundle=True, device=True)
    p.add_argument("--vector", default="smile", choices=[s.name for s in PRESETS])
    p.add_argument("--scale", type=float, default=None, help="strength (default: the vector's default_scale)")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--refine", type=int, nargs="+", default=[0, 30])
    p.add_argument("--embed-steps", type=int, default=100)
    p.add_argument("--judge", type=Path, default=DEFAULT_ATTRIBUTE_NET, help="attribute net (safetensors)")
    p.add_argument("--success-delta", type=float, default=0.15, help="fraction of the attribute range")
    p.add_argument("--timing", action="store_true", help="only time apply/refine/learn_edit on one face")
    p.add_argument("--ceiling", action="store_true",
                   help="also judge each embedded target face and the generator's spread of the attribute")
    args = parse_command(p, argv)
    pipeline = open_pipeline(args)
    library = VectorLibrary(Path("/nonexistent"), pipeline.bundle.id, pipeline.latent_shape,
                            read_only_roots=[pipeline.bundle.vectors_dir])
    vector = library.get(args.vector)
    scale = vector.default_scale if args.scale is None else args.scale
    if args.timing:
        for name, value in timing_report(pipeline, vector).items():
            print(f"{name:>24}: {value:9.2f} x" if "over" in name else f"{name:>24}: {value * 1e3:9.1f} ms")
        return
    domain = require_domain(p, pipeline.bundle, "the benchmark renders faces of a procedural domain")
    spec = next(s for s in PRESETS if s.name == args.vector)
    bench = EditBenchmark(pipeline, AttributeNet.load(args.judge).eval(), domain, spec, vector, scale,
                          args.embed_steps, args.success_delta)
    rows = {k: {"success": [], "outside": [], "iou": [], "seconds": []} for k in args.refine}
    target_success = []
    for seed in tqdm(range(args.n), desc=f"bench {args.vector}", unit="face"):
        outcomes, target_passes = bench.face(seed, args.refine, args.ceiling)
        target_success.append(target_passes)
        for steps, outcome in outcomes.items():
            for key, value in outcome.items():
                rows[steps][key].append(value)
    print(f"bundle={pipeline.bundle.id} vector={args.vector} scale={scale:g} faces={args.n} "
          f"embed_steps={args.embed_steps} device={pipeline.device} threads={torch.get_num_threads()}")
    print(f"{'refine':>6} {'success %':>9} {'outside Δ':>9} {'region IoU':>10} {'time s':>8}")
    for steps, r in rows.items():
        print(f"{steps:>6} {100 * np.mean(r['success']):9.1f} {np.mean(r['outside']):9.4f} {np.mean(r['iou']):10.3f} "
              f"{np.mean(r['seconds']):8.3f}")
    if args.ceiling:
        spread, render_spread = attribute_spread(pipeline, bench.judge, domain, spec.attribute)
        print(f"ceiling: embedded target faces pass on {100 * np.mean(target_success):.1f} %; judge spread of "
              f"{spec.attribute}: {spread:.2f} over generator samples, {render_spread:.2f} over renders "
              f"({SPREAD_N} each)")


if __name__ == "__main__":
    main()
