"""Peak memory of the segmentation branch on a full config-F image, against the official feature stack.

    python -m editgan_core.eval.segmenter_memory                 # 1024 px, 12 classes, 10 members
    python -m editgan_core.eval.segmenter_memory --size 512

A random-weight config-F generator synthesises one image's feature maps; the ensemble then computes
full-image logits and the logits of a central region, and each call's peak resident memory above
its starting point is read from Linux's ``/proc/self`` counters (peak RSS is what runs out on a
small machine; allocator statistics miss memory the heap keeps). Linux only.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import time
from collections.abc import Callable

import torch

from editgan_core.cli_common import command_parser, parse_command
from editgan_core.models.segmenter import PixelEnsemble
from editgan_core.models.stylegan2 import Generator, config_f_channels


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Make VmHWM (peak RSS) restart from the current RSS; Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    """Return freed heap pages to the OS, so later allocations show up as RSS growth."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure_peak(fn: Callable[[], object]) -> tuple[object, float, float, float]:
    """Run ``fn``; return its result, peak RSS above the starting RSS (bytes), wall and CPU seconds.

    The heap is trimmed first, so memory freed earlier cannot be reused unseen, and the kernel's
    peak-RSS counter is reset, so the synthesis before does not mask this call's peak.
    """
    _trim_heap()
    if not _reset_peak_rss():
        raise OSError("cannot reset the peak-RSS counter (/proc/self/clear_refs); Linux >= 4.0 needed")
    base = _proc_status_kib("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return result, (_proc_status_kib("VmHWM") - base) * 1024.0, wall, cpu


def bench_memory(size: int = 1024, num_classes: int = 12, members: int = 10, region: float = 0.1) -> None:
    gib = 2.0**30
    torch.manual_seed(0)
    generator = Generator(size, 512, 8, channel_multiplier=2).eval().requires_grad_(False)
    start = time.perf_counter()
    with torch.no_grad():
        latent = generator.w_to_wplus(generator.get_latent(torch.randn(1, 512)))
        features = generator.synthesis(latent, noise=generator.stored_noise(), return_features=True).features
    print(f"synthesis {size} px config-f (random weights): {time.perf_counter() - start:.1f} s, "
          f"features {sum(f.numel() for f in features) * 4 / gib:.2f} GiB at native resolutions")
    channels = generator.feature_channels()
    ensemble = PixelEnsemble(channels, num_classes, members).eval().requires_grad_(False)
    del generator
    for res in sorted({512, size}):
        ch = config_f_channels(2)
        d = 2 * sum(ch[2**i] for i in range(2, int(math.log2(res)) + 1))
        print(f"official stack at {res} px: d={d} x {res} x {res} x 4 B = {d * res * res * 4 / gib:.2f} GiB")
    print(f"ensemble: {members} members, hidden {ensemble.hidden}, {num_classes} classes, d={ensemble.dim}, "
          f"upsample {ensemble.upsample}, chunk {ensemble.chunk_bytes / 2**20:.0f} MiB")

    with torch.no_grad():
        logits, extra, wall, cpu = measure_peak(lambda: ensemble(features))
    print(f"full-image logits {tuple(logits.shape)}: peak extra RSS {extra / gib:.3f} GiB "
          f"({extra / 2**20:.0f} MiB, includes the {logits.numel() * 4 / 2**20:.0f} MiB output), "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU")

    side = int(size * region**0.5)
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[:, (size - side) // 2:(size + side) // 2, (size - side) // 2:(size + side) // 2] = True
    with torch.no_grad():
        picked, extra, wall, cpu = measure_peak(lambda: ensemble(features, pixels=mask))
    diff = (picked - logits.permute(0, 2, 3, 1)[mask]).abs().max().item()
    print(f"region logits ({int(mask.sum())} px, {region:.0%} of the image): peak extra RSS {extra / 2**20:.0f} MiB, "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU, max |difference to full-image logits| {diff:.2e}")


def main(argv: list[str] | None = None) -> None:
    parser = command_parser(__doc__, threads_default=1)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--members", type=int, default=10)
    args = parse_command(parser, argv)
    bench_memory(args.size, args.classes, args.members)


if __name__ == "__main__":
    main()
