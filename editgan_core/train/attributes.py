"""Train the attribute regressor on rendered faces (the judge of edits and the feature space of KID).

    python -m editgan_core.train.attributes --size 64 --out checkpoints/attribute_net_faces64.safetensors

Seeds: training faces come from [500_000, 1_000_000), disjoint from GAN training (>= 1_000_000) and
from evaluation (KID uses 0..2N-1; the validation here uses 0..999). Rendering is the slow part on a
CPU (``eval.render_speed``), so a pool is rendered up front and a few fresh faces replace
random pool entries at every step: every image is seen a few times, and the pool keeps changing.

Besides the editable attributes, the net regresses identity, colour and pose values (hues as cos/sin),
so that its features, used by KID, also notice a generator that gets colours or poses wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import torch
from tqdm import tqdm

from editgan_core.cli_common import command_parser, set_threads, setup_logging
from editgan_core.domains import get_domain
from editgan_core.models.attribute_net import AttributeNet
from editgan_core.train.data import TRAIN_SEED_BASE
from editgan_core.utils import to_tensor

SEED_BASE = 500_000  # [SEED_BASE, TRAIN_SEED_BASE): the attribute net's own seeds
CIRCULAR = ("bg_hue", "clothes_hue", "bg_angle")  # wrap around at 1: regressed as cos/sin


def domain_targets(domain: ModuleType) -> dict[str, tuple[float, float]]:
    """Editable attributes first, then every other continuous drawn value of the domain."""
    targets = dict(domain.ATTRIBUTE_RANGES)
    for spec in getattr(domain, "ATTRIBUTE_SPECS", ()):
        if spec.name in targets or spec.dist == "integer":
            continue
        if spec.name in CIRCULAR:
            targets[f"{spec.name}_cos"] = targets[f"{spec.name}_sin"] = (-1.0, 1.0)
        else:
            targets[spec.name] = (float(spec.low), float(spec.high))
    return targets


def target_values(attrs: dict[str, float], targets: dict[str, tuple[float, float]]) -> np.ndarray:
    """One face's targets normalised to [0, 1] by their ranges."""
    out = []
    for name, (low, high) in targets.items():
        base, _, trig = name.rpartition("_")
        if trig in ("cos", "sin") and base in CIRCULAR:
            value = getattr(math, trig)(2 * math.pi * attrs[base])
        else:
            value = attrs[name]
        out.append((value - low) / (high - low))
    return np.asarray(out, dtype=np.float32)


def render_set(domain: ModuleType, seeds: Sequence[int], size: int,
               targets: dict[str, tuple[float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, H, W, 3) and normalised targets (N, T) for the given seeds."""
    images, values = [], []
    for seed in seeds:
        sample = domain.render_face(int(seed), size)
        images.append(sample.image)
        values.append(target_values(sample.attributes, targets))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(values))


@torch.no_grad()
def validate(net: AttributeNet, images: torch.Tensor, values: torch.Tensor, batch: int = 250) -> dict[str, float]:
    """Mean absolute error per target, as a fraction of its range."""
    net.eval()
    pred = torch.cat([net.normalised(to_tensor(images[i:i + batch].numpy())) for i in range(0, len(images), batch)])
    net.train()
    return dict(zip(net.target_names, (pred - values).abs().mean(0).tolist(), strict=True))


def train(args: argparse.Namespace) -> tuple[AttributeNet, dict[str, float]]:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    domain = get_domain(args.domain)
    targets = domain_targets(domain)
    attributes = list(domain.ATTRIBUTE_RANGES)
    net = AttributeNet(targets, attributes, input_size=args.size, channels=args.channels, hidden=args.hidden)
    net = net.to(memory_format=torch.channels_last)  # faster convolutions on CPU
    print(f"attribute net: {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters, "
          f"{len(targets)} targets ({len(attributes)} editable)")

    t0 = time.perf_counter()
    pool_images, pool_values = render_set(domain, range(SEED_BASE, SEED_BASE + args.pool), args.size, targets)
    next_seed = SEED_BASE + args.pool
    val_images, val_values = render_set(domain, range(args.val), args.size, targets)
    print(f"rendered {args.pool} training and {args.val} validation faces in {time.perf_counter() - t0:.0f} s")

    # Editable attributes are the point; the rest shape the feature space and count a bit less.
    weight = torch.tensor([1.0 if n in attributes else args.extra_weight for n in targets])
    optim = torch.optim.Adam(net.parameters(), lr=args.lr)
    warmup = max(1, args.steps // 50)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))

    bar = tqdm(range(args.steps), desc="attribute net", smoothing=0.05)
    for step in bar:
        if args.refresh:
            slots = rng.choice(args.pool, size=min(args.refresh, args.pool), replace=False)
            fresh_images, fresh_values = render_set(domain, range(next_seed, next_seed + len(slots)), args.size,
                                                    targets)
            pool_images[slots], pool_values[slots] = fresh_images, fresh_values
            next_seed += len(slots)
            if next_seed + args.refresh > TRAIN_SEED_BASE:
                next_seed = SEED_BASE + args.pool  # never wander into the GAN's seeds
        index = torch.from_numpy(rng.integers(0, args.pool, size=args.batch))
        x = to_tensor(pool_images[index].numpy()).contiguous(memory_format=torch.channels_last)
        loss = ((net.normalised(x) - pool_values[index]).abs() * weight).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        schedule.step()
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{schedule.get_last_lr()[0]:.2e}")
    bar.close()
    net = net.to(memory_format=torch.contiguous_format).eval()
    return net, validate(net, val_images, val_values)


def report(net: AttributeNet, mae: dict[str, float], n_val: int) -> None:
    print(f"validation MAE on held-out seeds 0..{n_val - 1} (* = editable): units | fraction of range")
    for name in net.target_names:
        low, high = net.targets[name]
        mark = "*" if name in net.attribute_names else " "
        print(f" {mark} {name:20s} {mae[name] * (high - low):8.4f} | {mae[name]:.4f}")
    editable = [mae[n] for n in net.attribute_names]
    print(f"mean over editable attributes (*): {np.mean(editable):.4f} of range; "
          f"over all targets: {np.mean(list(mae.values())):.4f}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = command_parser(__doc__, threads_default=1)
    p.add_argument("--out", required=True, help="output .safetensors file (written atomically at the end)")
    p.add_argument("--domain", default="faces")
    p.add_argument("--size", type=int, default=64, help="render size = the net's input size")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam peak learning rate (cosine decay to 0)")
    p.add_argument("--pool", type=int, default=16000, help="faces rendered up front")
    p.add_argument("--refresh", type=int, default=6, help="pool faces replaced by fresh renders per step")
    p.add_argument("--val", type=int, default=1000, help="validation faces: seeds 0..val-1")
    p.add_argument("--channels", type=lambda s: [int(c) for c in s.split(",")], default=[24, 32, 64, 128])
    p.add_argument("--hidden", type=int, default=256, help="width of the feature layer")
    p.add_argument("--extra-weight", type=float, default=0.25, help="loss weight of the non-editable targets")
    p.add_argument("--seed", type=int, default=0)
    setup_logging()
    args = p.parse_args(argv)
    if args.pool + args.refresh > TRAIN_SEED_BASE - SEED_BASE:
        p.error(f"--pool must stay below {TRAIN_SEED_BASE - SEED_BASE} faces")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    import cv2

    cv2.setNumThreads(1)
    start, cpu_start = time.perf_counter(), time.process_time()
    net, mae = train(args)
    report(net, mae, args.val)
    meta = {"val_mae": json.dumps({n: round(v, 5) for n, v in mae.items()}), "val_seeds": f"0..{args.val - 1}",
            "train_seeds": f"{SEED_BASE}+", "steps": str(args.steps), "batch": str(args.batch)}
    net.save(args.out, metadata=meta)
    print(f"saved {args.out} ({time.perf_counter() - start:.0f} s wall, {time.process_time() - cpu_start:.0f} s CPU)")


if __name__ == "__main__":
    main()
