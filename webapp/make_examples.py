"""Write the example photos shown under the upload box (run once; the PNGs are committed).

They come from the procedural faces domain, not from a model, so they stay valid for every bundle
and are honest test inputs for embedding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from editgan_core.cli_common import setup_logging
from editgan_core.domains.faces import render_face

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
SEEDS = (3, 11, 27, 42)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=EXAMPLES_DIR)
    setup_logging()
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in SEEDS:
        path = args.out / f"face_{seed:03d}.png"
        Image.fromarray(render_face(seed, args.size).image).save(path, optimize=True)
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
