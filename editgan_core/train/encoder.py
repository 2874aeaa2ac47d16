"""Train the image -> W+ encoder against a frozen generator.

    python -m editgan_core.train.encoder --generator /work/runs/faces64 --out runs/enc64
    python -m editgan_core.train.encoder --generator runs/faces64 --out runs/enc64 --real-domain faces
    python -m editgan_core.train.encoder --generator g.pt --data ~/photos --out runs/enc_photos
    python -m editgan_core.train.encoder --bundle checkpoints/ffhq --data ~/photos --out runs/enc_ffhq

With ``--bundle`` the bundle's generator is used and the finished encoder is installed into the bundle
(checked as ``bundle add-encoder`` checks it; ``--replace`` to replace the bundle's current encoder).

Two kinds of batch, mixed in every step:
- generator samples: z -> w (random truncation, style mixing) -> W+ target, image = G(W+) with the
  generator's stored noise. Loss: ``lat * ||E(x) - w+||^2 + rec * (L2 + lpips * LPIPS)(G(E(x)), x)``.
  The latent term teaches where images live in W+; the reconstruction term what they look like.
- real images (procedural renders of ``--real-domain`` or a ``--data`` folder): reconstruction loss only,
  so the encoder also meets images the generator cannot make exactly.

The generator is frozen (no parameter gradients) but gradients flow through it into the encoder.
Resumable: rerunning with the same ``--out`` continues from ``checkpoint.pt``. ``encoder.safetensors``
(``Encoder.load``) is refreshed at every checkpoint and at the end; ``samples/`` holds
input | reconstruction pairs, ``metrics.jsonl`` the held-out evaluations.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from editgan_core.bundle import Bundle, BundleError
from editgan_core.bundle_build import add_encoder
from editgan_core.cli_common import command_parser, set_threads, setup_logging
from editgan_core.losses import LPIPS, load_lpips, masked_l2, psnr
from editgan_core.models.checkpoint import load_generator
from editgan_core.models.encoder import Encoder
from editgan_core.models.stylegan2 import Generator
from editgan_core.train.data import ImageFolder, infinite_batches
from editgan_core.utils import atomic_write, save_image_grid, to_tensor

# Procedural seeds: training renders walk [REAL_SEED_START, +REAL_SEED_COUNT), held-out ones start at 0.
# Both lie below the GAN's training seeds (>= 1,000,000), so neither was seen by the generator.
REAL_SEED_START = 200_000
REAL_SEED_COUNT = 300_000
EVAL_SEED_START = 0
EVAL_Z_SEED = 20_211_129  # the held-out generator samples


# -- generator ---------------------------------------------------------------------------------


@torch.no_grad()
def average_latent(generator: Generator, n: int = 10_000, seed: int = 31_337) -> torch.Tensor:
    """Mean w of ``n`` seeded z (1, style_dim): the encoder's output origin when the file stores none.

    Not seed 0: ``Generator().manual_seed(0)`` replays the draws that initialised a seed-0 GAN's first
    mapping layer, and early in training those z rows give far-out w.
    """
    device = generator.input.input.device
    z = torch.randn(n, generator.style_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    return torch.cat([generator.get_latent(chunk) for chunk in z.split(1000)]).mean(0, keepdim=True)


@torch.no_grad()
def sample_wplus(generator: Generator, batch: int, w_avg: torch.Tensor, mixing: float = 0.9,
                 truncation: tuple[float, float] = (0.7, 1.0), rng: torch.Generator | None = None) -> torch.Tensor:
    """Random W+ targets (batch, n_latent, style_dim) covering what the generator is asked to make.

    Each sample gets its own truncation psi in ``truncation``; with probability ``mixing`` the layers from
    a random crossover on take a second style, so the encoder learns W+ rather than only W.
    """
    device = w_avg.device
    n_latent, dim = generator.n_latent, generator.style_dim
    z = torch.randn(2 * batch, dim, generator=rng).to(device)
    w = generator.get_latent(z).view(2, batch, dim)
    psi = torch.empty(1, batch, 1).uniform_(*truncation, generator=rng).to(device)
    w = w_avg.view(1, 1, dim) + psi * (w - w_avg.view(1, 1, dim))
    mixed = torch.rand(batch, generator=rng) < mixing
    crossover = torch.randint(1, max(n_latent, 2), (batch,), generator=rng)
    second = mixed[:, None] & (torch.arange(n_latent)[None, :] >= crossover[:, None])  # (batch, n_latent)
    return torch.where(second.to(device)[..., None], w[1].unsqueeze(1), w[0].unsqueeze(1))


# -- loss --------------------------------------------------------------------------------------


@dataclass
class LossWeights:
    latent: float = 1.0
    rec: float = 1.0
    lpips: float = 0.8  # relative to L2, inside the reconstruction term


def encoder_loss(encoder: Encoder, generator: Generator, images: torch.Tensor, targets: torch.Tensor | None,
                 weights: LossWeights, lpips: LPIPS | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss for one batch whose first ``len(targets)`` images are generator samples with known W+.

    Returns the scalar loss and float logs (latent MSE, L2, LPIPS, PSNR of the reconstructions).
    """
    pred = encoder(images)
    recon = generator.synthesis(pred, noise=generator.stored_noise()).image
    logs: dict[str, float] = {}
    loss = images.new_zeros(())
    if targets is not None and len(targets) > 0:
        latent = (pred[: len(targets)] - targets).pow(2).mean()
        loss = loss + weights.latent * latent
        logs["lat"] = latent.item()
    l2 = masked_l2(recon, images).mean()
    rec = l2
    logs["l2"] = l2.item()
    if lpips is not None and weights.lpips > 0:
        perceptual = lpips(recon, images).mean()
        rec = rec + weights.lpips * perceptual
        logs["lpips"] = perceptual.item()
    loss = loss + weights.rec * rec
    logs["psnr"] = psnr(recon.detach(), images).mean().item()
    return loss, logs


# -- training ----------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    out: str
    generator: str
    real_domain: str | None = None
    data: str | None = None
    batch: int = 8
    real_fraction: float = 0.5  # share of each batch taken from real images when a real source is given
    kimg: float = 100.0
    steps: int | None = None  # stop after this many steps (overrides kimg when smaller)
    lr: float = 0.002
    latent_weight: float = 1.0
    rec_weight: float = 1.0
    lpips_weight: float = 0.8
    use_lpips: bool = True
    mixing: float = 0.9
    truncation_min: float = 0.7
    encoder_size: int | None = None  # input resolution; default min(generator size, 256)
    ckpt_every: int = 200
    sample_every: int = 500
    eval_every: int = 1000
    eval_count: int = 100
    threads: int | None = None
    device: str | None = None
    seed: int = 0
    bundle: str | None = None  # install the finished encoder into this bundle
    replace: bool = False  # ... even if it already has one


class EncoderTrainer:
    """Owns encoder, optimiser, data streams and the run folder; ``train()`` runs to the end."""

    def __init__(self, cfg: TrainConfig) -> None:
        if cfg.real_domain and cfg.data:
            raise ValueError("give --real-domain or --data, not both")
        self.cfg = cfg
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.out = Path(cfg.out)
        (self.out / "samples").mkdir(parents=True, exist_ok=True)
        self.generator, latent_avg = load_generator(cfg.generator, self.device)
        g = self.generator
        w_avg = latent_avg if latent_avg is not None else average_latent(g)
        size = cfg.encoder_size or min(g.size, 256)
        self.encoder = Encoder(size, g.n_latent, g.style_dim).to(self.device).set_w_avg(w_avg)
        self.optim = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.weights = LossWeights(cfg.latent_weight, cfg.rec_weight, cfg.lpips_weight)
        self.lpips = load_lpips() if cfg.use_lpips and cfg.lpips_weight > 0 else None
        if self.lpips is not None:
            self.lpips = self.lpips.to(self.device).requires_grad_(False)
        has_real = bool(cfg.real_domain or cfg.data)
        self.real_batch = min(cfg.batch - 1, round(cfg.batch * cfg.real_fraction)) if has_real else 0
        self.step = 0
        self.images_seen = 0
        self.real_seen = 0
        self.resume()
        self._real_iter: Iterator[torch.Tensor] | None = None
        self.eval_set = self._eval_set()

    # -- data ----------------------------------------------------------------------------------
    def _render(self, seeds: range | list[int]) -> torch.Tensor:
        from editgan_core.domains import get_domain

        images, _ = get_domain(self.cfg.real_domain).render_batch(seeds, self.generator.size)
        return to_tensor(images)

    def real_images(self, count: int) -> torch.Tensor:
        """The next ``count`` training images from the real source (renders resume where they stopped)."""
        if self.cfg.real_domain:
            seeds = [REAL_SEED_START + (self.real_seen + i) % REAL_SEED_COUNT for i in range(count)]
            images = self._render(seeds)
        else:
            if self._real_iter is None:
                folder = ImageFolder(self.cfg.data, self.generator.size)
                loader = DataLoader(folder, batch_size=count, shuffle=True, drop_last=len(folder) >= count)
                self._real_iter = infinite_batches(loader)
            images = next(self._real_iter)
        self.real_seen += len(images)
        return images.to(self.device)

    @torch.no_grad()
    def synthetic(self, count: int, rng: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` generator samples: (images, W+ targets)."""
        cfg = self.cfg
        targets = sample_wplus(self.generator, count, self.encoder.w_avg, cfg.mixing, (cfg.truncation_min, 1.0), rng)
        images = self.generator.synthesis(targets, noise=self.generator.stored_noise()).image
        return images, targets

    def _eval_set(self) -> dict[str, torch.Tensor]:
        """Fixed held-out data: generator samples from a fixed seed and real images never trained on."""
        n = self.cfg.eval_count
        rng = torch.Generator().manual_seed(EVAL_Z_SEED)
        chunks = [self.synthetic(min(50, n - i), rng) for i in range(0, n, 50)]
        data = {"synth": torch.cat([c[0] for c in chunks]), "targets": torch.cat([c[1] for c in chunks])}
        if self.cfg.real_domain:
            data["real"] = self._render(range(EVAL_SEED_START, EVAL_SEED_START + n)).to(self.device)
        elif self.cfg.data:  # a folder has no held-out split: its first images (also trained on)
            folder = ImageFolder(self.cfg.data, self.generator.size, flip=False)
            data["real"] = torch.stack([folder[i] for i in range(min(n, len(folder)))]).to(self.device)
        return data

    # -- evaluation and samples ----------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(W+, reconstruction) for a batch, in eval mode and chunks of 25."""
        self.encoder.eval()
        latents, recons = [], []
        for chunk in images.split(25):
            w = self.encoder(chunk)
            latents.append(w)
            recons.append(self.generator.synthesis(w, noise=self.generator.stored_noise()).image)
        self.encoder.train()
        return torch.cat(latents), torch.cat(recons)

    def evaluate(self) -> dict[str, float]:
        """Held-out numbers: latent MSE and PSNR on generator samples, PSNR on real images."""
        data = self.eval_set
        w, recon = self.reconstruct(data["synth"])
        result = {"step": self.step, "kimg": self.images_seen / 1000,
                  "latent_mse": (w - data["targets"]).pow(2).mean().item(),
                  "psnr_synth": psnr(recon, data["synth"]).mean().item()}
        if "real" in data:
            _, recon = self.reconstruct(data["real"])
            result["psnr_real"] = psnr(recon, data["real"]).mean().item()
        line = json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in result.items()})
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(line + "\n")
        tqdm.write(f"eval {line}")
        return result

    def write_samples(self) -> None:
        """Grid of input | reconstruction pairs: 8 generator samples, then 8 real images if any."""
        inputs = [self.eval_set["synth"][:8]]
        if "real" in self.eval_set:
            inputs.append(self.eval_set["real"][:8])
        inputs = torch.cat(inputs)
        _, recon = self.reconstruct(inputs)
        pairs = torch.stack([inputs, recon], dim=1).flatten(0, 1)
        save_image_grid(pairs, self.out / "samples" / f"{self.step:06d}.png", nrow=8)

    # -- checkpoints ---------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def resume(self) -> None:
        if not self.ckpt_path.exists():
            return
        state = torch.load(self.ckpt_path, map_location=self.device, weights_only=True)
        self.encoder.load_state_dict(state["encoder"])
        self.optim.load_state_dict(state["optim"])
        self.step, self.images_seen, self.real_seen = state["step"], state["images_seen"], state["real_seen"]
        print(f"resumed from {self.ckpt_path} at step {self.step} ({self.images_seen / 1000:.1f} kimg)")

    def save(self) -> None:
        state = {"encoder": self.encoder.state_dict(), "optim": self.optim.state_dict(), "step": self.step,
                 "images_seen": self.images_seen, "real_seen": self.real_seen,
                 "config": json.dumps(asdict(self.cfg))}
        atomic_write(self.ckpt_path, lambda p: torch.save(state, p))
        meta = {"generator": str(self.cfg.generator), "step": str(self.step), "images_seen": str(self.images_seen)}
        self.encoder.save(self.out / "encoder.safetensors", metadata=meta)

    # -- loop ----------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        n_synth = self.cfg.batch - self.real_batch
        images, targets = self.synthetic(n_synth)
        if self.real_batch:
            images = torch.cat([images, self.real_images(self.real_batch)])
        loss, logs = encoder_loss(self.encoder, self.generator, images, targets, self.weights, self.lpips)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.step += 1
        self.images_seen += len(images)
        return logs

    def train(self) -> dict[str, float]:
        """Run to ``kimg`` / ``steps``; returns the final evaluation."""
        cfg = self.cfg
        total = int(cfg.kimg * 1000)
        if cfg.steps is not None:
            total = min(total, cfg.steps * cfg.batch)
        self.encoder.train()
        if self.step == 0:
            self.evaluate()
            self.write_samples()
        bar = tqdm(total=total, initial=self.images_seen, unit="img", smoothing=0.05, dynamic_ncols=True)
        start, start_seen = time.monotonic(), self.images_seen
        while self.images_seen < total:
            logs = self.train_step()
            bar.update(self.cfg.batch)
            bar.set_postfix({k: f"{v:.3f}" if k != "psnr" else f"{v:.1f}" for k, v in logs.items()}, refresh=False)
            if self.step % cfg.ckpt_every == 0:
                self.save()
            if self.step % cfg.sample_every == 0:
                self.write_samples()
            if self.step % cfg.eval_every == 0 and self.images_seen < total:
                self.evaluate()
        bar.close()
        rate = (self.images_seen - start_seen) / max(time.monotonic() - start, 1e-9)
        self.save()
        self.write_samples()
        result = self.evaluate()
        print(f"done: step {self.step}, {self.images_seen / 1000:.2f} kimg, {rate:.1f} img/s; "
              f"encoder -> {self.out / 'encoder.safetensors'}")
        return result


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = command_parser(__doc__, device=True)
    p.add_argument("--generator", help="run/bundle folder, generator .safetensors or rosinality .pt")
    p.add_argument("--bundle", help="train for this bundle's generator and install the encoder into it at the end")
    p.add_argument("--replace", action="store_true", help="with --bundle: replace the bundle's current encoder")
    p.add_argument("--out", required=True, help="run directory (checkpoint, samples, encoder); reused to resume")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--real-domain", help="procedural domain whose renders are the real images (e.g. faces)")
    src.add_argument("--data", help="folder of real images")
    p.add_argument("--real-fraction", type=float, default=0.5, help="share of each batch from real images")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--kimg", type=float, default=100.0, help="thousands of images to train on")
    p.add_argument("--steps", type=int, help="stop after this many steps (if sooner than --kimg)")
    p.add_argument("--lr", type=float, default=0.002, help="Adam learning rate (equalised-lr layers)")
    p.add_argument("--latent-weight", type=float, default=1.0, help="weight of ||E(x) - w+||^2")
    p.add_argument("--rec-weight", type=float, default=1.0, help="weight of the reconstruction loss")
    p.add_argument("--lpips-weight", type=float, default=0.8, help="LPIPS relative to L2 when LPIPS is available")
    p.add_argument("--no-lpips", action="store_true", help="L2 reconstruction only")
    p.add_argument("--mixing", type=float, default=0.9, help="style-mixing probability of generator samples")
    p.add_argument("--truncation-min", type=float, default=0.7, help="truncation psi drawn from [this, 1]")
    p.add_argument("--encoder-size", type=int, help="encoder input resolution (default min(G size, 256))")
    p.add_argument("--ckpt-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--sample-every", type=int, default=500, help="steps between sample grids")
    p.add_argument("--eval-every", type=int, default=1000, help="steps between held-out evaluations")
    p.add_argument("--eval-count", type=int, default=100, help="held-out images per evaluation")
    p.add_argument("--seed", type=int, default=0)
    setup_logging()
    a = p.parse_args(argv)
    if not 0 <= a.real_fraction < 1:
        p.error("--real-fraction must be in [0, 1)")
    generator = a.generator
    if a.bundle:  # checked before the long work
        if a.generator:
            p.error("--bundle trains for the bundle's own generator; drop --generator")
        try:
            bundle = Bundle.load(a.bundle)
        except BundleError as exc:
            p.error(str(exc))
        if bundle.has("encoder") and not a.replace:
            p.error(f"bundle '{bundle.id}' already has an encoder; pass --replace to train a new one into it")
        generator = str(bundle.root)
    if not generator:
        p.error("give --generator or --bundle")
    return TrainConfig(
        out=a.out, generator=generator, bundle=a.bundle, replace=a.replace, real_domain=a.real_domain, data=a.data,
        batch=a.batch,
        real_fraction=a.real_fraction, kimg=a.kimg, steps=a.steps, lr=a.lr, latent_weight=a.latent_weight,
        rec_weight=a.rec_weight, lpips_weight=a.lpips_weight, use_lpips=not a.no_lpips, mixing=a.mixing,
        truncation_min=a.truncation_min, encoder_size=a.encoder_size, ckpt_every=a.ckpt_every,
        sample_every=a.sample_every, eval_every=a.eval_every, eval_count=a.eval_count, threads=a.threads,
        device=a.device, seed=a.seed,
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = parse_args(argv)
    set_threads(cfg.threads)
    result = EncoderTrainer(cfg).train()
    if cfg.bundle:
        if cfg.data:
            real = f"folder {Path(cfg.data).name}"
        else:
            real = f"procedural {cfg.real_domain}" if cfg.real_domain else "none (generator samples only)"
        bundle = add_encoder(cfg.bundle, Path(cfg.out) / "encoder.safetensors", force=cfg.replace,
                             provenance={"trained": "by train.encoder", "kimg": round(result["kimg"], 2),
                                         "real_images": real})
        print(f"installed the encoder into {bundle.root}")
    return result


if __name__ == "__main__":
    main()
