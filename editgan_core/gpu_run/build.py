"""Phase ``build``: compile the CUDA ops and say what machine this is.

Both extensions compile at once, each in its own process (ninja already parallelises within one), into
torch's extension cache; the test and benchmark phases then only load them. Writes its result JSON
even where nothing can be built (no CUDA device), which the dry run relies on.

    python -m editgan_core.gpu_run.build --result build.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from editgan_core.ops import cuda_ext
from editgan_core.ops.upfirdn2d import upfirdn2d_native


def machine() -> dict:
    """torch, CUDA and GPU facts the figures depend on."""
    info: dict = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
                  "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=props.total_memory / 2**30,
                    multiprocessors=props.multi_processor_count, cudnn=torch.backends.cudnn.version(),
                    tf32_matmul_default=torch.backends.cuda.matmul.allow_tf32,
                    tf32_cudnn_default=torch.backends.cudnn.allow_tf32)
    for tool, args in (("nvcc", ["--version"]), ("nvidia-smi", ["--query-gpu=driver_version,clocks.max.sm",
                                                                "--format=csv,noheader"])):
        if shutil.which(tool):
            done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)
            info[tool] = (done.stdout.strip().splitlines() or [""])[-1]
    return info


def _build_one(name: str) -> float:
    start = time.perf_counter()
    cuda_ext.build_extension(name)
    return time.perf_counter() - start


def build_all() -> dict:
    """Compile both extensions in parallel processes, then load them here and run one op against native."""
    start = time.perf_counter()
    seconds, errors = {}, {}
    with ProcessPoolExecutor(len(cuda_ext.EXTENSIONS), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_build_one, name) for name in cuda_ext.EXTENSIONS}
        for name, future in futures.items():
            try:
                seconds[name] = round(future.result(), 1)
            except Exception as exc:  # the compiler's message is the result
                errors[name] = cuda_ext._summarise(exc)
    result: dict = {"compile_s": seconds, "wall_s": round(time.perf_counter() - start, 1), "errors": errors}
    result["built"] = not errors and cuda_ext.available()
    if result["built"]:
        x = torch.randn(2, 3, 33, 47, device="cuda")
        kernel = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = (kernel[None] * kernel[:, None] / 64).cuda()
        args = (2, 2, 1, 1, 2, 1, 2, 1)
        diff = (cuda_ext.upfirdn2d(x, kernel, *args) - upfirdn2d_native(x, kernel, *args)).abs().max().item()
        result["smoke_upfirdn2d_max_abs_diff"] = diff
    return result


def main(argv: list[str] | None = None) -> None:
    from editgan_core.cli_common import setup_logging

    setup_logging()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--result", type=Path, required=True)
    args = p.parse_args(argv)
    result: dict = {"machine": machine()}
    if torch.cuda.is_available():
        result.update(build_all())
    else:
        result.update(built=False, reason="no CUDA device: nothing to build")
    print(json.dumps(result, indent=1), flush=True)
    args.result.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
