"""Benchmark of the photo round trip on synthetic in-the-wild photos (``photos.synthetic``); prints figures.

    python -m editgan_core.photos.bench --bundle checkpoints/faces64 --composites 100

Crop PSNR against the render from the true landmarks and from clicks with a human's error, the centre square
the studio used before, the paste-back's region and exactness, timings of each stage on a 1024x768 photo,
and which face detector OpenCV offers here.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from editgan_core.cli_common import command_parser, parse_command
from editgan_core.losses import image_psnr
from editgan_core.photos.export import encode_like
from editgan_core.photos.framing import LANDMARKS
from editgan_core.photos.synthetic import Composite, make_composite
from editgan_core.photos.workflow import AlignedPhoto
from editgan_core.pipeline import EditGANPipeline
from editgan_core.vectors import load_vector

CLICK_ERROR = 0.05  # standard deviation of a click, as a fraction of the eye distance


def landmark_error(aligned: AlignedPhoto, comp: Composite, pipe: EditGANPipeline) -> float:
    """Mean distance (crop pixels) between where the true landmarks land and where the framing wants them."""
    got = aligned.alignment.to_crop([comp.landmarks[n] for n in LANDMARKS])
    return float(np.mean([np.hypot(*(g - np.array(pipe.bundle.framing.target(n)))) for g, n in zip(got, LANDMARKS,
                                                                                                 strict=True)]))


def noisy_clicks(comp: Composite, rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    eyes = np.hypot(*np.subtract(comp.landmarks["right_eye"], comp.landmarks["left_eye"]))
    return {n: tuple(np.add(p, rng.normal(0, CLICK_ERROR * eyes, 2))) for n, p in comp.landmarks.items()}


def timed(times: dict[str, list[float]], name: str, fn: Callable[[], object]) -> object:
    started = time.perf_counter()
    out = fn()
    times.setdefault(name, []).append(time.perf_counter() - started)
    return out


def round_trip(pipe: EditGANPipeline, comp: Composite, preset, times: dict[str, list[float]]) -> dict[str, float]:
    """Decode a PNG of the photo, align, embed (encoder), apply the preset, paste back, encode; with timings."""
    buffer = io.BytesIO()
    Image.fromarray(comp.photo).save(buffer, format="PNG")
    data = buffer.getvalue()
    aligned = timed(times, "decode + align + crop", lambda: pipe.align(data, points=comp.landmarks))
    embedded = timed(times, "embed (encoder only)", lambda: pipe.embed(aligned.crop, steps=0))
    after = timed(times, "preset + render", lambda: pipe.render(pipe.apply(embedded.latent, [(preset, 1.0)])))
    pasted = timed(times, "paste-back", lambda: pipe.paste_back(aligned, embedded.render, after, preset.class_ids))
    timed(times, "encode PNG", lambda: encode_like(pasted.image, "PNG"))
    outside = ~pasted.changed
    return {"changed_fraction": float(pasted.changed.mean()),
            "outside_differing": int((pasted.image[outside] != comp.photo[outside]).any(axis=-1).sum())}


def detector_line() -> str:
    """What this OpenCV offers for finding faces offline (the Haar cascades left the main package in 5.x)."""
    cascades = Path(cv2.data.haarcascades) if hasattr(cv2, "data") else None
    files = sorted(cascades.glob("*.xml")) if cascades and cascades.is_dir() else []
    return (f"OpenCV {cv2.__version__}: CascadeClassifier {'yes' if hasattr(cv2, 'CascadeClassifier') else 'no'}, "
            f"{len(files)} bundled cascade files, FaceDetectorYN {'yes' if hasattr(cv2, 'FaceDetectorYN') else 'no'} "
            "(needs an ONNX model no wheel ships)")


def summary(values: list[float]) -> str:
    return f"mean {statistics.fmean(values):.2f}, min {min(values):.2f}, max {max(values):.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(__doc__, bundle=True, device=True)
    parser.add_argument("--composites", type=int, default=100)
    parser.add_argument("--round-trips", type=int, default=10, help="composites also run through embed and paste-back")
    parser.add_argument("--preset", default="smile")
    parser.add_argument("--seed", type=int, default=1000, help="first composite seed (tests use small seeds)")
    args = parse_command(parser, argv)
    pipe = EditGANPipeline.from_pretrained(args.bundle, device=args.device, lpips=False)
    preset = load_vector(pipe.bundle.vectors_dir / f"{args.preset}.safetensors")
    rng = np.random.default_rng(args.seed)
    exact, clicked, centre, errors, times, trips = [], [], [], [], {}, []
    for i in range(args.composites):
        comp = make_composite(args.seed + i, model_size=pipe.resolution)
        exact.append(image_psnr(pipe.align(comp.photo, points=comp.landmarks).crop, comp.face.image))
        noisy = pipe.align(comp.photo, points=noisy_clicks(comp, rng))
        clicked.append(image_psnr(noisy.crop, comp.face.image))
        errors.append(landmark_error(noisy, comp, pipe))
        centre.append(image_psnr(pipe.align(comp.photo).crop, comp.face.image))
        if i < args.round_trips:
            trips.append(round_trip(pipe, comp, preset, times))
    print(f"{args.composites} composites 1024x768, faces {pipe.resolution} px enlarged 180-420 px, turned up to 30 deg")
    print(f"crop PSNR vs the render, true landmarks:  {summary(exact)} dB")
    print(f"crop PSNR, clicks off by {CLICK_ERROR:.0%} of the eye distance: {summary(clicked)} dB; "
          f"landmark error {summary(errors)} crop px")
    print(f"crop PSNR, centre square (no alignment): {summary(centre)} dB")
    print(f"paste-back ({len(trips)} round trips, preset {args.preset}): changed "
          f"{summary([100 * t['changed_fraction'] for t in trips])} % of the photo; pixels differing outside the "
          f"region: {sum(t['outside_differing'] for t in trips)}")
    for name, values in times.items():
        print(f"  {name}: median {1000 * statistics.median(values):.0f} ms")
    print(f"detector: {detector_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
