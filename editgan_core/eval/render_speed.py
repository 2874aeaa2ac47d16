"""Speed of the procedural face renderer: the data source of GAN, encoder and attribute-net training.

    python -m editgan_core.eval.render_speed [--sizes 64 128] [--n 300]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import cv2

from editgan_core.domains import faces


def images_per_second(sizes: Sequence[int] = (64, 128), n: int = 300, rounds: int = 3) -> dict[int, float]:
    """Single-threaded images/s (sampling + rendering) per size: best of ``rounds`` wall-clock rounds.

    CPU-time throughput is printed too: on a shared machine it is the steadier number.
    """
    cv2.setNumThreads(1)
    rates = {}
    for size in sizes:
        faces.render_face(0, size)  # warm-up: caches (noise tile, ramps) are built once per size
        best_wall = best_cpu = 0.0
        per_round = max(1, n // rounds)
        for r in range(rounds):
            wall, cpu = time.perf_counter(), time.process_time()
            for seed in range(r * per_round, (r + 1) * per_round):
                faces.render_face(seed, size)
            best_wall = max(best_wall, per_round / (time.perf_counter() - wall))
            best_cpu = max(best_cpu, per_round / max(time.process_time() - cpu, 1e-9))
        rates[size] = best_wall
        print(f"{size:4d} px: {best_wall:7.1f} images/s wall, {best_cpu:7.1f} images/s per CPU second "
              f"(one thread, best of {rounds} x {per_round} images)")
    return rates


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="output sizes in pixels")
    p.add_argument("--n", type=int, default=300, help="faces per size, split over the rounds")
    p.add_argument("--rounds", type=int, default=3)
    from editgan_core.cli_common import setup_logging

    setup_logging()
    args = p.parse_args(argv)
    images_per_second(args.sizes, args.n, args.rounds)


if __name__ == "__main__":
    main()
