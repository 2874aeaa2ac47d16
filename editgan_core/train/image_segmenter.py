"""Distil a bundle's segmentation branch into a pixel segmenter and install it (``models.image_segmenter``).

    python -m editgan_core.train.image_segmenter --bundle checkpoints/faces64 [--samples 6000] [--steps 900]

Generator samples (half at truncation 0.7, half untruncated) are drawn with their features, labelled by the
bundle's segmentation branch, and a small U-Net learns to read those labels from the pictures alone. The
edit objective then asks both readers for the painted parts (``EditWeights.image_ce``), so a δ that only
moves the features cannot pass. No annotation is needed; the figure printed is the U-Net's agreement with
the branch (mIoU) on samples held out from training. ``--replace`` retrains a bundle's existing one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from editgan_core.bundle import Bundle, BundleError
from editgan_core.bundle_build import install_image_segmenter
from editgan_core.capabilities import segmenter_missing_message
from editgan_core.cli_common import command_parser, open_pipeline, parse_command
from editgan_core.model_card import display_path
from editgan_core.models.image_segmenter import ImageSegmenter, model_size
from editgan_core.pipeline import EditGANPipeline
from editgan_core.scoring import confusion, iou_per_class

log = logging.getLogger(__name__)

SAMPLE_SEED = 4_000_000  # z of the distillation samples
HELD_OUT = 256  # first samples: agreement check only
CHUNK_PIXELS = 64 * 64 * 64  # generator pixels drawn at once (64 pictures at 64 px, one at 512 px)
MAX_POOL_BYTES = 2 << 30  # the sample pool (half-precision pictures + labels) stays under this
TRUNCATIONS = (0.7, 1.0)  # the studio's sampling truncation and none: embedded photos lie between


@dataclass(frozen=True)
class DistilSettings:
    """How much to sample and train; ``check`` bounds the in-memory pool before anything is drawn."""

    samples: int = 6000
    steps: int = 900
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0

    def check(self, size: int) -> None:
        per_sample = size * size * (3 * 2 + 1)
        if not (self.samples > HELD_OUT and self.samples * per_sample <= MAX_POOL_BYTES):
            raise ValueError(f"--samples must be above {HELD_OUT} (the held-out check) and at most "
                             f"{MAX_POOL_BYTES // per_sample} at {size} px (the pool is kept in memory)")
        if self.steps < 1 or self.batch < 1 or not self.lr > 0:
            raise ValueError("--steps, --batch and --lr must be positive")


@torch.no_grad()
def sample_pool(pipeline: EditGANPipeline, count: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` generator pictures (half precision, [-1, 1]) and the branch's labels of them (uint8), at ``size``."""
    pipeline._require_segmenter()
    chunk = max(1, CHUNK_PIXELS // pipeline.resolution**2)  # the features of a chunk are what fills memory
    rng = torch.Generator().manual_seed(SAMPLE_SEED)
    images, labels = [], []
    for start in tqdm(range(0, count, chunk), desc="samples", unit="batch", leave=False):
        b = min(chunk, count - start)
        z = torch.randn(b, pipeline.generator.style_dim, generator=rng).to(pipeline.device)
        trunc = torch.tensor(TRUNCATIONS)[torch.randint(len(TRUNCATIONS), (b,), generator=rng)].to(pipeline.device)
        latent = pipeline.latent_from_z(z, trunc[:, None]).to(pipeline.device)
        out = pipeline.generator.synthesis(latent, noise=pipeline.noise, return_features=True)
        image, label = out.image.clamp(-1, 1), pipeline.segmenter.predict(out.features)
        if size != image.shape[-1]:
            image = F.interpolate(image, size=(size, size), mode="area")
            label = F.interpolate(label[:, None].float(), size=(size, size), mode="nearest")[:, 0]
        images.append(image.half().cpu())
        labels.append(label.to(torch.uint8).cpu())
    return torch.cat(images), torch.cat(labels)


def agreement(model: ImageSegmenter, images: torch.Tensor, labels: torch.Tensor, chunk: int = 64) -> list[float]:
    """IoU per class of the model's reading against the branch's labels (NaN where neither has the class)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        pred = torch.cat([model(images[i:i + chunk].float().to(device)).argmax(1).cpu()
                          for i in range(0, len(images), chunk)])
    return iou_per_class(confusion(pred.numpy(), labels.numpy(), model.num_classes)).tolist()


def distil(pipeline: EditGANPipeline, settings: DistilSettings) -> tuple[ImageSegmenter, dict]:
    """A trained ``ImageSegmenter`` for the pipeline's bundle and its figures (agreement with the branch)."""
    size = model_size(pipeline.resolution)
    settings.check(size)
    start = time.perf_counter()
    images, labels = sample_pool(pipeline, settings.samples, size)
    classes = len(pipeline.bundle.classes)
    freq = torch.bincount(labels[HELD_OUT:].flatten().long(), minlength=classes).float()
    weight = (freq.sum() / freq.clamp(min=1)).sqrt()  # small parts count more, not as much as their rarity
    weight = (weight / weight.mean()).to(pipeline.device)
    torch.manual_seed(settings.seed)
    model = ImageSegmenter(classes, size).to(pipeline.device)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=settings.steps)
    rng = torch.Generator().manual_seed(settings.seed)
    bar = tqdm(range(settings.steps), desc="image segmenter", unit="step")
    for _ in bar:
        idx = torch.randint(HELD_OUT, len(images), (settings.batch,), generator=rng)
        x, y = images[idx].float(), labels[idx].long()
        if torch.rand((), generator=rng) < 0.5:  # the part classes are not sided, so a mirrored face is a face
            x, y = x.flip(-1), y.flip(-1)
        x = x + 0.02 * torch.randn(x.shape, generator=rng)
        loss = F.cross_entropy(model(x.to(pipeline.device)), y.to(pipeline.device), weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    model.eval().requires_grad_(False)
    ious = agreement(model, images[:HELD_OUT], labels[:HELD_OUT])
    seen = [v for v in ious if v == v]
    names = [c.name for c in pipeline.bundle.classes]
    figures = {"samples": settings.samples, "steps": settings.steps, "held_out": HELD_OUT,
               "agreement_miou": round(sum(seen) / len(seen), 4),
               "agreement_per_class": {n: round(v, 3) for n, v in zip(names, ious, strict=True) if v == v},
               "seconds": round(time.perf_counter() - start, 1)}
    return model.cpu(), figures


def main(argv: list[str] | None = None) -> int:
    p = command_parser(__doc__, bundle=True, device=True)
    defaults = DistilSettings()
    p.add_argument("--samples", type=int, default=defaults.samples, help="generator samples to learn from")
    p.add_argument("--steps", type=int, default=defaults.steps, help="training steps")
    p.add_argument("--batch", type=int, default=defaults.batch)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--replace", action="store_true", help="replace the bundle's image segmenter")
    args = parse_command(p, argv)
    settings = DistilSettings(args.samples, args.steps, args.batch, args.lr)
    try:  # before any model is loaded
        target = Bundle.load(args.bundle)
        settings.check(model_size(target.resolution))
        if not target.has("segmenter"):
            raise BundleError(segmenter_missing_message(target.id, display_path(target.root)))
        if target.has("image_segmenter") and not args.replace:
            raise BundleError(f"bundle '{target.id}' already has an image segmenter; pass --replace")
    except (ValueError, BundleError) as exc:
        p.error(str(exc))
    pipeline = open_pipeline(args, lpips=False, image_segmenter=False)  # the old one may not fit the bundle
    model, figures = distil(pipeline, settings)
    bundle: Bundle = install_image_segmenter(pipeline.bundle, model, figures)
    print(f"image segmenter of '{bundle.id}': agreement with the segmentation branch on {HELD_OUT} held-out samples, "
          f"mIoU {figures['agreement_miou']:.3f} ({figures['seconds']:.0f} s)")
    print("  " + " ".join(f"{k} {v:.2f}" for k, v in figures["agreement_per_class"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
