"""What a pivotal-tuning step costs against what an embedding already measures: the ratios behind the price
of "High fidelity" that the page shows after an embedding (``webapp.gpu_tasks.embed_task``).

    python -m webapp.bench_tuning_price --bundle checkpoints/faces64 [--repeats 3] [--steps 20] [--threads 1]

Each repeat takes a render of a new seed as the photo and times, in turn on this device: an encoder-only
embedding (encoder + render, as the task times it), the steps of an optimising embedding (``StepClock``, as
the task times them) and the steps of a pivotal tuning around that embedding (the same clock). Prints the
medians, the two ratios (the task's ``TUNING_PER_EMBED_STEP`` and ``TUNING_PER_ENCODER_EMBED``) and how far
the task's estimate with its constants lands from the measured step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from editgan_core.pipeline import EditGANPipeline
from webapp import gpu_tasks
from webapp.gpu_tasks import StepClock
from webapp.ui import set_torch_threads

FIRST_SEED = 900  # photos: renders of seeds the other benchmarks do not use


def _per_step(run) -> float:
    clock = StepClock()
    run(clock.wrap(lambda _info: None))
    return clock.seconds / max(1, clock.steps)


def measure(pipe: EditGANPipeline, seed: int, steps: int) -> dict[str, float]:
    """Seconds of an encoder-only embedding, of one embedding step and of one tuning step, for one photo."""
    pixels = pipe.render(pipe.sample_latent(seed, 1.0), with_labels=False).image
    start = time.perf_counter()
    encoded = pipe.encoder_embed(pixels, report=False)
    encoder_s = time.perf_counter() - start
    embed_s = _per_step(lambda callback: pipe.embed(pixels, steps=steps, callback=callback, report=False))
    tune_s = _per_step(lambda callback: pipe.pivotal_tune(pixels, encoded.latent, steps=steps, callback=callback))
    if pipe.device.type == "cuda":
        torch.cuda.synchronize(pipe.device)
    return {"encoder embedding": encoder_s, "embedding step": embed_s, "tuning step": tune_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="checkpoints/faces64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="embedding and tuning steps per repeat")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    threads = set_torch_threads(args.threads)
    pipe = EditGANPipeline.from_pretrained(args.bundle, device=args.device)
    measure(pipe, FIRST_SEED - 1, 2)  # warm-up
    runs = [measure(pipe, FIRST_SEED + k, args.steps) for k in range(args.repeats)]
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    per_embed = statistics.median(r["tuning step"] / r["embedding step"] for r in runs)
    per_encoder = statistics.median(r["tuning step"] / r["encoder embedding"] for r in runs)
    print(f"bundle {pipe.bundle.id}, {pipe.resolution} px, {pipe.device}, {threads} thread(s), "
          f"LPIPS {'on' if pipe.lpips is not None else 'off (L2)'}, {args.repeats} repeats x {args.steps} steps")
    for key, value in med.items():
        print(f"  {key:<18} {value:.4f} s (median)")
    print(f"  tuning step / embedding step   {per_embed:.2f}   (task constant {gpu_tasks.TUNING_PER_EMBED_STEP})")
    print(f"  tuning step / encoder embedding {per_encoder:.2f}   (task constant {gpu_tasks.TUNING_PER_ENCODER_EMBED})")
    for what, estimate in (("embedding step", gpu_tasks.TUNING_PER_EMBED_STEP * med["embedding step"]),
                           ("encoder embedding", gpu_tasks.TUNING_PER_ENCODER_EMBED * med["encoder embedding"])):
        print(f"  estimate from the {what}: {estimate:.4f} s, {100 * (estimate / med['tuning step'] - 1):+.0f} % "
              "against the measured tuning step")


if __name__ == "__main__":
    main()
