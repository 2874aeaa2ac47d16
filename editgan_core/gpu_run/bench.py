"""Phase ``bench``: the GPU figures of issue 17 as one JSON, written after every section (in this order).

- ``generator``: forward and forward+backward-to-W+ seconds per image at 256/512/1024 config-f (random
  weights) for each ops implementation and precision (``editgan_core.eval.ops_speed.bench_config``);
- ``segmentation_memory``: peak extra memory of the segmentation branch (full image, edit region, edit
  region with backward) against the official full-stack formulation, at the pipeline's size;
- ``pipeline``: at 1024 px, one embedding step and ``eval.edit.timing_report`` (vector apply + render,
  30-step refinement, 100-step ``learn_edit``, one edit step next to a generator forward), on a
  random-weight config-f bundle with a random pixel ensemble and a random-weight LPIPS (same cost as
  the pretrained one, whose weights cannot be downloaded there; the dry run leaves LPIPS out);
- ``accuracy``: how far the CUDA ops, TF32 and bf16 move a 1-image forward and its W+ gradient from
  native strict-fp32, which is what says where the faster modes are safe.

    python -m editgan_core.gpu_run.bench --out bench.json --work /tmp/w [--dry-run]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from editgan_core.eval.edit import timing_report
from editgan_core.eval.ops_speed import CONFIGS, bench_config
from editgan_core.eval.segmenter_memory import measure_peak
from editgan_core.losses import LPIPS
from editgan_core.models.segmenter import PixelEnsemble
from editgan_core.models.stylegan2 import Generator
from editgan_core.ops import use_impl
from editgan_core.pipeline import EditGANPipeline
from editgan_core.testing import make_random_bundle, tiny_generator_config
from editgan_core.utils import atomic_write
from editgan_core.vectors import load_vector

CONFIG_F_1024 = {"size": 1024, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2}
PRECISIONS = {
    "fp32": "float32 throughout, TF32 off for matmul and cuDNN",
    "tf32": "float32 tensors, TF32 tensor cores for matmul and cuDNN convolutions",
    "bf16": "torch.autocast bfloat16 (TF32 for what autocast leaves in float32)",
}
SECTIONS = ("generator", "segmentation_memory", "pipeline", "accuracy")  # most wanted first: a cut keeps them


class Record(dict):
    """The benchmark JSON, rewritten whole after every update so a cut run leaves a valid file."""

    def __init__(self, path: Path, **fields) -> None:
        super().__init__(fields, errors={})
        self.path = path
        self.write()

    def write(self) -> None:
        atomic_write(self.path, lambda p: p.write_text(json.dumps(self, indent=1, default=str)))

    def attempt(self, section: str, fn: Callable[[], object]) -> None:
        """Store ``fn()`` under ``section``, or its error; one failing section never stops the others."""
        start = time.perf_counter()
        try:
            self[section] = fn()
        except Exception as exc:  # an OOM or a kernel failure is itself a finding
            self["errors"][section] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        print(f"bench: {section} done in {time.perf_counter() - start:.1f} s", flush=True)
        self.write()


@contextlib.contextmanager
def precision(mode: str, device: torch.device) -> Iterator[None]:
    """One of PRECISIONS for the block; the TF32 switches are restored afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode != "fp32"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if mode == "bf16" else contextlib.nullcontext()
    try:
        with autocast:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generator_speed(names: list[str], device: torch.device, impls: list[str], modes: list[str],
                    repeats: int, record: Record) -> list[dict]:
    rows = record.setdefault("generator", [])
    for name in names:
        for mode in modes:
            for impl in impls:
                try:
                    with precision(mode, device):
                        (row,) = bench_config(name, device, [impl], repeats, batch=1)
                except Exception as exc:
                    row = {"config": name, "impl": impl, "error": f"{type(exc).__name__}: {exc}"}
                rows.append({**row, "precision": mode})
                record.write()
    return rows


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def accuracy(names: list[str], device: torch.device, variants: list[tuple[str, str]]) -> dict:
    """Each (impl, precision) variant's image and W+ gradient against native strict fp32, same weights."""
    out = {}
    for name in names:
        torch.manual_seed(0)
        g = Generator(**CONFIGS[name]).to(device).eval().requires_grad_(False)
        latent, noise = g.w_to_wplus(g.mean_latent(256)), g.stored_noise()

        def run(impl: str, mode: str, g=g, latent=latent, noise=noise) -> tuple[torch.Tensor, torch.Tensor]:
            with use_impl(impl), precision(mode, device):
                w = latent.clone().requires_grad_(True)
                image = g.synthesis(w, noise=noise).image.float()
                (grad,) = torch.autograd.grad(image.square().mean(), w)
            return image.detach(), grad.float()

        ref_image, ref_grad = run("native", "fp32")
        out[name] = {}
        for impl, mode in variants:
            image, grad = run(impl, mode)
            out[name][f"{impl}/{mode}"] = {
                "image_max_abs": (image - ref_image).abs().max().item(), "image_psnr_db": psnr_db(image, ref_image),
                "grad_rel_err": ((grad - ref_grad).norm() / ref_grad.norm().clamp_min(1e-30)).item()}
        del g
    return out


def peak_extra(fn: Callable[[], object], device: torch.device) -> dict:
    """Peak memory above the start while ``fn`` runs: CUDA allocator peak, or peak RSS on a CPU."""
    if device.type != "cuda":
        _, extra, wall, _ = measure_peak(fn)
        return {"peak_extra_bytes": int(extra), "seconds": wall, "measured": "peak RSS (VmHWM)"}
    sync(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    wall = time.perf_counter() - start
    extra = torch.cuda.max_memory_allocated(device) - base
    del result
    return {"peak_extra_bytes": int(extra), "seconds": wall, "measured": "torch.cuda.max_memory_allocated"}


def segmentation_memory(config: dict, device: torch.device, classes: int = 12, members: int = 10,
                        region: float = 0.1) -> dict:
    """The memory-light segmentation branch against ``forward_reference`` (the official d x H x W stack)."""
    torch.manual_seed(0)
    g = Generator(**config).to(device).eval().requires_grad_(False)
    with torch.no_grad():
        latent = g.w_to_wplus(g.get_latent(torch.randn(1, g.style_dim, device=device)))
        features = g.synthesis(latent, noise=g.stored_noise(), return_features=True).features
    ensemble = PixelEnsemble(g.feature_channels(), classes, members).to(device).eval().requires_grad_(False)
    size = g.size
    del g
    side = int(size * region**0.5)
    mask = torch.zeros(1, size, size, dtype=torch.bool, device=device)
    mask[:, (size - side) // 2:(size + side) // 2, (size - side) // 2:(size + side) // 2] = True

    def region_backward() -> None:
        leaves = [f.detach().requires_grad_(True) for f in features]
        ensemble(leaves, pixels=mask).logsumexp(1).sum().backward()

    result: dict = {"size": size, "members": members, "classes": classes, "d": ensemble.dim,
                    "region_pixels": int(mask.sum()),
                    "official_stack_bytes": ensemble.dim * size * size * 4,
                    "feature_bytes": sum(f.numel() * f.element_size() for f in features)}
    with torch.no_grad():
        result["full_image"] = peak_extra(lambda: ensemble(features), device)
        result["region"] = peak_extra(lambda: ensemble(features, pixels=mask), device)
    result["region_backward"] = peak_extra(region_backward, device)
    try:
        with torch.no_grad():
            result["official_full_stack"] = peak_extra(lambda: ensemble.forward_reference(features), device)
    except torch.cuda.OutOfMemoryError as exc:
        result["official_full_stack"] = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
        torch.cuda.empty_cache()
    return result


def pipeline_timings(config: dict, device: torch.device, work: Path, dry: bool) -> dict:
    """Embedding step and eval.edit.timing_report on a random-weight bundle of ``config``."""
    root = make_random_bundle(work / "bench_bundle", config, bundle_id="gpu-bench", fit_segmenter=False)
    pipe = EditGANPipeline.from_pretrained(root, device=device, lpips=False)
    if not dry:  # random VGG weights cost what the pretrained ones (not downloadable there) would
        pipe.lpips = LPIPS().to(device)
    vector = load_vector(root / "vectors" / "smile.safetensors")
    steps = 5 if dry else 20
    with precision("tf32", device):
        image = pipe.render(pipe.sample_latent(1)).image
        stamps: list[float] = []
        pipe.embed(image, steps=steps + 1, callback=lambda _info: stamps.append(time.perf_counter()))
        sizes = {"repeats": 1, "rounds": 1, "refine_steps": 3, "edit_steps": 5} if dry else {"repeats": 3, "rounds": 2}
        report = timing_report(pipe, vector, long_repeats=1, **sizes)
    return {"size": pipe.resolution, "precision": "tf32", "ops": os.environ.get("EDITGAN_OPS", "auto"),
            "lpips": None if dry else "VGG16 LPIPS, random weights",
            "segmenter": "10-member pixel ensemble, random weights",
            "embed_step": (stamps[-1] - stamps[0]) / steps, **report}


def main(argv: list[str] | None = None) -> None:
    from editgan_core.cli_common import setup_logging

    setup_logging()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="the JSON file")
    p.add_argument("--work", type=Path, required=True, help="scratch folder (the benchmark bundle)")
    p.add_argument("--dry-run", action="store_true", help="tiny models on any device, seconds in all")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda_ops = device.type == "cuda" and os.environ.get("EDITGAN_OPS", "auto") != "native"
    impls = ["native", "cuda"] if cuda_ops else ["native"]
    modes = ["fp32", "tf32", "bf16"] if device.type == "cuda" else ["fp32", "bf16"]
    names = ["demo64"] if args.dry_run else ["256", "512", "1024"]
    config = tiny_generator_config(32) if args.dry_run else CONFIG_F_1024
    record = Record(args.out, schema="editgan-gpu-bench/1", dry_run=args.dry_run, device=str(device),
                    gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    torch=torch.__version__, impls=impls, precisions={m: PRECISIONS[m] for m in modes},
                    units="seconds per image; bytes")
    plan = {
        "generator": lambda: generator_speed(names, device, impls, modes, 1 if args.dry_run else 5, record),
        "accuracy": lambda: accuracy(names, device, [("cuda", "fp32")] * cuda_ops + [("native", m) for m in modes[1:]]),
        "segmentation_memory": lambda: segmentation_memory(config, device),
        "pipeline": lambda: pipeline_timings(config, device, args.work, args.dry_run),
    }
    for section in args.sections:
        record.attempt(section, plan[section])


if __name__ == "__main__":
    main()
