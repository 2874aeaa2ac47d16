"""Out-of-domain benchmark of the fidelity report: held-out renders against heavily changed renders.

    python -m editgan_core.eval.fidelity --bundle checkpoints/faces64 --n 100

Prints the ROC AUC of the domain distance (and of each feature alone) separating ``n`` held-out renders
of the model from ``n`` other renders changed out of the domain (blended with photo textures, shown in
other colour spaces, drowned in noise), how many of each the threshold flags, and the distance of
scikit-image's ``astronaut`` photo. Needs scikit-image (requirements-dev.txt) for the photos.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from editgan_core.fidelity import FidelityChecker
from editgan_core.pipeline import EditGANPipeline, prepare_image
from editgan_core.utils import tensor_to_uint8, to_tensor

HELD_OUT_SEED = 9_100_000  # render seeds of the in-domain set (calibration uses others)
CHANGED_SEED = 9_200_000  # render seeds of the set that gets changed
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "camera", "coins", "text")


def roc_auc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """P(positive score > negative score), ties counting half (the Mann-Whitney form of the ROC AUC)."""
    neg, pos = np.asarray(negatives, dtype=np.float64), np.asarray(positives, dtype=np.float64)
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def photo_crops(size: int) -> list[np.ndarray]:
    """scikit-image's sample photographs as RGB crops at the model's size."""
    from skimage import data

    crops = []
    for name in PHOTOS:
        image = np.asarray(getattr(data, name)())
        crops.append(prepare_image(image, size))
    return crops


def _colour_space(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.asarray(Image.fromarray(x).convert(mode))[..., :3].copy()


def changes(photos: list[np.ndarray]) -> list[tuple[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]]:
    """The out-of-domain changes, by name: each takes a uint8 render and a random generator."""
    def texture(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        photo = photos[int(rng.integers(len(photos)))].astype(np.float64)
        alpha = rng.uniform(0.5, 0.8)
        return np.clip((1 - alpha) * x + alpha * photo, 0, 255).astype(np.uint8)

    def gaussian(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(x + rng.normal(0, rng.uniform(35, 60), x.shape), 0, 255).astype(np.uint8)

    def salt_pepper(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = x.copy()
        hit = rng.random(x.shape[:2]) < 0.25
        out[hit] = rng.choice([0, 255], size=(int(hit.sum()), 1))
        return out

    return [("photo texture", texture), ("BGR", lambda x, _: x[..., ::-1].copy()),
            ("HSV", lambda x, _: _colour_space("HSV")(x)), ("YCbCr", lambda x, _: _colour_space("YCbCr")(x)),
            ("inverted", lambda x, _: 255 - x), ("gaussian noise", gaussian), ("salt and pepper", salt_pepper)]


def run(pipe: EditGANPipeline, n: int) -> dict[str, object]:
    checker = FidelityChecker.for_pipeline(pipe)
    probe = checker.probe
    calib = checker.calibration()
    held_out = tensor_to_uint8(probe.render_images(range(HELD_OUT_SEED, HELD_OUT_SEED + n)))
    base = tensor_to_uint8(probe.render_images(range(CHANGED_SEED, CHANGED_SEED + n)))
    rng = np.random.default_rng(0)
    kinds = changes(photo_crops(pipe.resolution))
    changed = np.stack([kinds[i % len(kinds)][1](x, rng) for i, x in enumerate(base)])
    f_in, f_out = probe.features(to_tensor(held_out)), probe.features(to_tensor(changed))
    d_in, d_out = calib.distance(f_in), calib.distance(f_out)
    astronaut = probe.features(to_tensor(photo_crops(pipe.resolution)[0][None]))
    per_kind = {name: roc_auc(d_in, d_out[i::len(kinds)]) for i, (name, _) in enumerate(kinds)}
    return {
        "auc": roc_auc(d_in, d_out),
        "auc_per_feature": {name: roc_auc(f_in[:, j], f_out[:, j]) for j, name in enumerate(calib.features)},
        "auc_per_change": per_kind,
        "flagged_in": int((d_in > calib.threshold).sum()), "flagged_out": int((d_out > calib.threshold).sum()),
        "threshold": calib.threshold, "astronaut": float(calib.distance(astronaut)[0]),
        "features": calib.features,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="checkpoints/faces64")
    parser.add_argument("--n", type=int, default=100, help="renders per set")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    pipe = EditGANPipeline.from_pretrained(args.bundle, device=args.device)
    out = run(pipe, args.n)
    print(f"features: {', '.join(out['features'])}; threshold {out['threshold']:.2f}")
    print(f"ROC AUC (domain distance), {args.n} held-out renders vs {args.n} changed: {out['auc']:.4f}")
    for name, auc in out["auc_per_feature"].items():
        print(f"  feature {name} alone: {auc:.4f}")
    for name, auc in out["auc_per_change"].items():
        print(f"  change {name}: {auc:.4f}")
    print(f"flagged: {out['flagged_in']}/{args.n} held-out renders, {out['flagged_out']}/{args.n} changed renders")
    verdict = "flagged" if out["astronaut"] > out["threshold"] else "NOT flagged"
    print(f"astronaut: distance {out['astronaut']:.2f} ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
