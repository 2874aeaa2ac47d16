"""InterFaceGAN on the demo domain: a linear direction in W per attribute, fitted to the judge's readings.

    python -m editgan_core.eval.interfacegan --bundle checkpoints/faces64 [--n 2000] [--out DIR]

Shen et al. fit a hyperplane in W to attribute labels of generator samples and edit along its normal.
Here the labels are the attribute net's readings of ``n`` samples (truncation 1) and the fit is a ridge
linear regression (numpy: 128 dimensions and a few thousand samples need nothing more), which also gives
the slope: attribute units per unit step along the normal. ``condition`` projects out other attributes'
normals (the paper's conditional manipulation), so e.g. "open the mouth" is asked not to move the smile.

Every direction is also saved as a vector ("judge direction", ``source="judge direction"``) whose scale 1
moves the fitted samples' mean reading to the preset's target — the linear step, lengthened until the
judge's mean reading of 32 samples reaches the target (``calibrated``) — so the gallery can set it beside
the EditGAN preset.
It needs no painted map, but thousands of labels from a judge that was itself trained on 500 000 renders;
note that the strict benchmark reads success with the same judge, which flatters these directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from editgan_core.cli_common import command_parser, open_pipeline, parse_command, require_domain
from editgan_core.eval.kid import DEFAULT_ATTRIBUTE_NET
from editgan_core.eval.seeds import INTERFACEGAN_LATENT_SEEDS
from editgan_core.models.attribute_net import AttributeNet
from editgan_core.pipeline import EditGANPipeline
from editgan_core.train.presets import PRESETS
from editgan_core.utils import tensor_to_uint8, to_tensor
from editgan_core.vectors import EditVector, save_vector, utc_now

DEFAULT_SAMPLES = 2000
RIDGE = 1e-3
CALIBRATION_SAMPLES = 32
CALIBRATION_FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


@dataclass(frozen=True)
class Direction:
    """Unit normal n in W, attribute units per unit step along it, and the fitted samples' mean reading."""

    normal: np.ndarray
    slope: float
    mean: float


def fit_direction(w: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> Direction:
    """Ridge regression of ``y`` (N,) on ``w`` (N, d): its coefficient's direction and length."""
    w = np.asarray(w, np.float64)
    y = np.asarray(y, np.float64)
    wc, yc = w - w.mean(0), y - y.mean()
    coef = np.linalg.solve(wc.T @ wc / len(w) + ridge * np.eye(w.shape[1]), wc.T @ yc / len(w))
    slope = float(np.linalg.norm(coef))
    if slope == 0:
        raise ValueError("the readings do not vary with w: no direction to fit")
    return Direction(coef / slope, slope, float(y.mean()))


def condition(direction: Direction, others: list[Direction]) -> Direction:
    """``direction`` with the others' normals projected out (Gram–Schmidt), so moving along it leaves their
    linear readings unchanged; the slope is rescaled to the part of the normal that is left."""
    basis: list[np.ndarray] = []
    for other in others:
        v = other.normal - sum((other.normal @ b) * b for b in basis)
        if np.linalg.norm(v) > 1e-6:
            basis.append(v / np.linalg.norm(v))
    n = direction.normal - sum((direction.normal @ b) * b for b in basis)
    length = float(np.linalg.norm(n))
    if length < 1e-6:
        raise ValueError("the direction lies in the span of the ones to keep fixed")
    return Direction(n / length, direction.slope * length, direction.mean)


@torch.no_grad()
def judged_samples(pipeline: EditGANPipeline, judge: AttributeNet, n: int, batch: int = 32
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """W codes of ``n`` generator samples (truncation 1) and the judge's readings of their images."""
    seeds = INTERFACEGAN_LATENT_SEEDS[:n]
    ws, readings = [], {}
    for start in tqdm(range(0, n, batch), desc="judge samples", unit="batch"):
        latents = torch.cat([pipeline.sample_latent(s, truncation=1.0) for s in seeds[start:start + batch]])
        images = tensor_to_uint8(pipeline.generator.synthesis(latents.to(pipeline.device), noise=pipeline.noise).image)
        for name, values in judge.predict(to_tensor(images)).items():
            readings.setdefault(name, []).append(values.numpy())
        ws.append(latents[:, 0].numpy())
    return np.concatenate(ws), {k: np.concatenate(v) for k, v in readings.items()}


def direction_vector(pipeline: EditGANPipeline, direction: Direction, name: str, attribute: str, target: float,
                     n_samples: int, conditioned_on: list[str]) -> EditVector:
    """δ = α·n on every W+ row, with α moving the fitted average reading to ``target``."""
    alpha = (target - direction.mean) / direction.slope
    delta = torch.from_numpy(alpha * direction.normal).float()[None].repeat(pipeline.latent_shape[0], 1)
    return EditVector(delta=delta, name=name, description=f"InterFaceGAN: {attribute} to {target:g} (judge direction)",
                      bundle_id=pipeline.bundle.id, class_ids=[], created=utc_now(), source="judge direction",
                      extra={"method": "InterFaceGAN (ridge regression in W on the attribute net's readings)",
                             "attribute": attribute, "target": target, "fit_samples": n_samples,
                             "conditioned_on": conditioned_on, "slope": direction.slope,
                             "fit_mean": direction.mean})


@torch.no_grad()
def calibrated(pipeline: EditGANPipeline, judge: AttributeNet, vector: EditVector, w: np.ndarray,
               factors: tuple[float, ...] = CALIBRATION_FACTORS) -> EditVector:
    """The vector rescaled by the smallest factor whose mean judged reading on the samples ``w`` reaches its
    target: the judge's response saturates, so the linear slope's step falls short (``extra.calibration``)."""
    attribute, target = vector.extra["attribute"], vector.extra["target"]
    latents = pipeline.generator.w_to_wplus(torch.from_numpy(w).float()).cpu()
    toward = 1.0 if target >= vector.extra["fit_mean"] else -1.0
    chosen = factors[-1]
    for factor in factors:
        images = tensor_to_uint8(pipeline.generator.synthesis((latents + factor * vector.delta).to(pipeline.device),
                                                              noise=pipeline.noise).image)
        if toward * (judge.predict(to_tensor(images))[attribute].mean().item() - target) >= 0:
            chosen = factor
            break
    vector.delta = vector.delta * chosen
    vector.extra["calibration"] = chosen
    return vector


def judge_directions(pipeline: EditGANPipeline, judge: AttributeNet, ranges: dict, n: int,
                     conditional: bool = True) -> list[EditVector]:
    """One judge-direction vector per preset, each conditioned on every other editable attribute and
    calibrated on the first ``CALIBRATION_SAMPLES`` fitted samples."""
    w, readings = judged_samples(pipeline, judge, n)
    fitted = {a: fit_direction(w, readings[a]) for a in ranges}
    out = []
    for spec in PRESETS:
        others = [a for a in ranges if a != spec.attribute] if conditional else []
        d = condition(fitted[spec.attribute], [fitted[a] for a in others])
        vector = direction_vector(pipeline, d, f"judge_{spec.name}", spec.attribute, spec.value, n, others)
        out.append(calibrated(pipeline, judge, vector, w[:CALIBRATION_SAMPLES]))
    return out


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, bundle=True, device=True)
    p.add_argument("--n", type=int, default=DEFAULT_SAMPLES, help="generator samples the directions are fitted on")
    p.add_argument("--judge", type=Path, default=DEFAULT_ATTRIBUTE_NET)
    p.add_argument("--unconditional", action="store_true", help="do not project out the other attributes")
    p.add_argument("--out", type=Path, help="folder for the vectors (default: the bundle's presets folder)")
    args = parse_command(p, argv)
    if not 10 <= args.n <= len(INTERFACEGAN_LATENT_SEEDS):
        p.error(f"--n must be within 10..{len(INTERFACEGAN_LATENT_SEEDS)}")
    pipeline = open_pipeline(args)
    domain = require_domain(p, pipeline.bundle, "directions are fitted to the readings of the domain's judge")
    judge = AttributeNet.load(args.judge).eval()
    out = args.out or pipeline.bundle.vectors_dir
    for vector in judge_directions(pipeline, judge, dict(domain.ATTRIBUTE_RANGES), args.n, not args.unconditional):
        path = save_vector(vector, out / f"{vector.name}.safetensors")
        print(f"{vector.name}: slope {vector.extra['slope']:.3f}/unit, |δ| {vector.delta[0].norm():.2f} -> {path}")


if __name__ == "__main__":
    main()
