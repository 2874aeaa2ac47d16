"""Train a StyleGAN2 (non-saturating logistic loss, lazy R1, path-length regulariser, EMA generator).

    python -m editgan_core.train.gan --domain faces --size 64 --out runs/faces64
    python -m editgan_core.train.gan --data ~/my_photos --size 128 --out runs/mine
    torchrun --nproc_per_node 4 -m editgan_core.train.gan --domain faces --size 128 --out runs/f128

``--recon W --encoder checkpoints/faces64`` adds the mode-regularising term of Che et al. (2017, "Mode
regularized GANs"): real images are encoded to W+ and the generator is also trained to redraw them
(L2 weighted by W, plus the adversarial loss on the redrawn images), with the encoder trained alongside.
An adversarial loss alone lets a generator drop the tails of the data (on the demo faces: broad smiles,
strong gazes), which nothing in EditGAN can edit back; the reconstruction term charges for every real
image the generator cannot draw. The co-trained encoder is saved as ``encoder.safetensors``;
``--encoder new`` starts it from scratch with the generator (Che et al.'s joint training).

``--init`` starts from a bundle's or run's G and D; a smaller model (and its encoder) is grown to ``--size``
(``train.grow``): ``--size 128 --preset grow128 --init checkpoints/faces64 --encoder checkpoints/faces64``.

Resumable: rerunning with the same ``--out`` continues from ``checkpoint.pt``. The EMA generator and
the discriminator are also written as ``generator_ema.safetensors`` and ``discriminator.safetensors``
(``Generator.load``, ``Discriminator.load``) at every checkpoint, and sample grids (fixed latents) go
to ``samples/``. ``--minutes`` stops a run after that much wall time with a final checkpoint;
``--ckpt-minutes`` checkpoints at least that often (default 10). Losses and throughput go to
``metrics.jsonl``, one line per ``--log-every`` steps (``editgan_core.train.metrics``).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from editgan_core.cli_common import command_parser, set_threads, setup_logging
from editgan_core.losses import masked_l2, psnr
from editgan_core.models.checkpoint import LATENT_AVG_KEY
from editgan_core.models.encoder import Encoder
from editgan_core.models.serialization import load_checked, read_safetensors
from editgan_core.models.stylegan2 import Discriminator, Generator
from editgan_core.train import grow
from editgan_core.train.data import TRAIN_SEED_BASE, DomainStream, ImageFolder, infinite_batches
from editgan_core.train.encoder import average_latent
from editgan_core.train.metrics import FILE as METRICS_FILE
from editgan_core.train.metrics import MetricsLog
from editgan_core.utils import atomic_write, save_image_grid

# Lean widths that make CPU training possible; the GPU presets are wider.
NEW_ENCODER = "new"  # --encoder value: co-train a fresh encoder from the first step
PRESETS: dict[str, dict] = {
    "tiny32": dict(size=32, style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 16}),  # tests, smoke runs
    "tiny64": dict(size=64, style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 16, 64: 8},
                   encoder_size=32),  # tiny32 grown by one level, as grow128 is demo64 grown (tests)
    "demo64": dict(size=64, style_dim=128, n_mlp=4, channels={4: 128, 8: 128, 16: 128, 32: 64, 64: 32}),
    "demo128": dict(size=128, style_dim=256, n_mlp=4,
                    channels={4: 256, 8: 256, 16: 256, 32: 128, 64: 64, 128: 32}),
    # demo64 + a 128-px block, grown from faces64 (--init; train.grow); a new encoder reads 64 px, as the old
    "grow128": dict(size=128, style_dim=128, n_mlp=4, channels={4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16},
                    encoder_size=64),
    "config-f": dict(style_dim=512, n_mlp=8, channels=None),
}


@dataclass
class TrainConfig:
    out: str
    size: int = 64
    domain: str | None = "faces"
    data: str | None = None
    preset: str | None = None
    style_dim: int = 128
    n_mlp: int = 4
    channels: dict[int, int] | None = field(default=None)
    batch: int = 16
    kimg: float = 300.0
    lr: float = 0.002
    r1: float | None = None  # None: StyleGAN2-ADA heuristic 0.0002 * size^2 / batch
    r1_every: int = 16
    path_reg: float = 2.0
    path_every: int = 4
    path_batch_shrink: int = 2
    mixing: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float = 0.05
    ckpt_every: int = 250
    log_every: int = 50  # steps per line of metrics.jsonl
    sample_every: int = 1000
    workers: int = 0
    amp: bool = False
    threads: int | None = None
    seed: int = 0
    init: str | None = None
    freeze_grown: float = 0.0  # kimg during which a grown model's copied generator layers stay fixed (inf: always)
    recon: float = 0.0  # weight of the L2 reconstruction of encoded real images; 0: plain StyleGAN2
    recon_adv: float = 1.0  # weight of the adversarial loss on those reconstructions
    recon_batch: int | None = None  # real images reconstructed per step (default batch // 2)
    recon_size: int | None = None  # resolution the L2 term compares at (None: the image size)
    encoder: str | None = None  # encoder file, or a bundle/run folder with encoder.safetensors
    encoder_size: int | None = None  # input size of an encoder started new (None: the image size, at most 256)
    extremes: float = 0.0  # rate at which a rendered face's editable attributes sit at an end of their range
    minutes: float | None = None  # wall-clock budget of this invocation; stops with a final checkpoint
    ckpt_minutes: float = 10.0  # also checkpoint once this long has passed since the last checkpoint


def build_models(cfg: TrainConfig, device: torch.device) -> tuple[Generator, Discriminator, Generator]:
    g_kwargs = dict(size=cfg.size, style_dim=cfg.style_dim, n_mlp=cfg.n_mlp, channels=cfg.channels)
    generator = Generator(**g_kwargs).to(device)
    discriminator = Discriminator(cfg.size, channels=cfg.channels).to(device)
    g_ema = Generator(**g_kwargs).to(device).eval().requires_grad_(False)
    g_ema.load_state_dict(generator.state_dict())
    return generator, discriminator, g_ema


def mixing_noise(batch: int, dim: int, prob: float, device: torch.device) -> list[torch.Tensor]:
    if prob > 0 and random.random() < prob:
        return list(torch.randn(2, batch, dim, device=device).unbind(0))
    return [torch.randn(batch, dim, device=device)]


def d_r1_penalty(real_pred: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(real_pred.sum(), real_img, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def g_path_penalty(fake_img: torch.Tensor, latents: torch.Tensor, mean_path_length: torch.Tensor, decay: float = 0.01):
    """Path-length regulariser: Jacobian norms of w -> image should be constant (smoother W)."""
    noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = torch.autograd.grad((fake_img * noise).sum(), latents, create_graph=True)
    path_lengths = grad.square().sum(2).mean(1).sqrt()
    path_mean = mean_path_length + decay * (path_lengths.mean().detach() - mean_path_length)
    return (path_lengths - path_mean).square().mean(), path_mean.detach()


@torch.no_grad()
def accumulate(target: torch.nn.Module, source: torch.nn.Module, beta: float) -> None:
    for p_t, p_s in zip(target.parameters(), source.parameters(), strict=True):
        p_t.lerp_(p_s, 1 - beta)
    for b_t, b_s in zip(target.buffers(), source.buffers(), strict=True):
        b_t.copy_(b_s)


def make_loader(cfg: TrainConfig, rank: int, world: int):
    if cfg.data:
        dataset = ImageFolder(cfg.data, cfg.size)
        sampler = torch.utils.data.DistributedSampler(dataset) if world > 1 else None
        loader = DataLoader(dataset, batch_size=cfg.batch, shuffle=sampler is None, sampler=sampler,
                            num_workers=cfg.workers, drop_last=True, persistent_workers=cfg.workers > 0)
        return infinite_batches(loader)
    stream = DomainStream(cfg.domain, cfg.size, cfg.batch, start_seed=TRAIN_SEED_BASE + rank * 100_000_000,
                          extremes=cfg.extremes)
    return iter(DataLoader(stream, batch_size=None, num_workers=cfg.workers))


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        if cfg.r1 is None:
            cfg.r1 = 0.0002 * cfg.size**2 / cfg.batch
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1:
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        torch.manual_seed(cfg.seed + self.rank)
        random.seed(cfg.seed + self.rank)
        self.out = Path(cfg.out)
        (self.out / "samples").mkdir(parents=True, exist_ok=True)
        self.generator, self.discriminator, self.g_ema = build_models(cfg, self.device)
        g_ratio = cfg.path_every / (cfg.path_every + 1) if cfg.path_reg > 0 else 1.0
        d_ratio = cfg.r1_every / (cfg.r1_every + 1)
        self.g_optim = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr * g_ratio, betas=(0.0, 0.99**g_ratio))
        self.d_optim = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr * d_ratio,
                                        betas=(0.0, 0.99**d_ratio))
        self.encoder, self.e_optim = self._build_encoder() if cfg.recon > 0 else (None, None)
        self.step = 0
        self.images_seen = 0
        self.copied: list[str] = []  # generator parameters a grown run took from the smaller model
        self.mean_path_length = torch.zeros((), device=self.device)
        self.sample_z = torch.randn(32, cfg.style_dim, generator=torch.Generator().manual_seed(1234)).to(self.device)
        self.resume()
        self.metrics = MetricsLog(self.out / METRICS_FILE, cfg.log_every, enabled=self.rank == 0,
                                  resume_step=self.step, images_seen=self.images_seen)
        if self.world > 1:
            self.g_ddp = DistributedDataParallel(self.generator, device_ids=self._ids(), broadcast_buffers=False)
            self.d_ddp = DistributedDataParallel(self.discriminator, device_ids=self._ids(), broadcast_buffers=False)
        else:
            self.g_ddp, self.d_ddp = self.generator, self.discriminator
        self.e_ddp = self.encoder
        if self.encoder is not None and self.world > 1:
            self.e_ddp = DistributedDataParallel(self.encoder, device_ids=self._ids(), broadcast_buffers=False)

    def _ids(self):
        return [self.device.index] if self.device.type == "cuda" else None

    def _build_encoder(self) -> tuple[Encoder, torch.optim.Optimizer]:
        """The encoder that maps real images into W+ for the reconstruction term, and its optimiser."""
        if not self.cfg.encoder:
            raise ValueError("--recon needs --encoder (an encoder.safetensors, a folder holding one, or 'new')")
        if self.cfg.encoder == NEW_ENCODER:
            g = self.generator
            size = self.cfg.encoder_size or min(g.size, 256)
            encoder = Encoder(size, g.n_latent, g.style_dim).to(self.device).set_w_avg(average_latent(g))
            return encoder.train(), torch.optim.Adam(encoder.parameters(), lr=self.cfg.lr * 0.5, betas=(0.9, 0.99))
        path = Path(self.cfg.encoder)
        path = path / "encoder.safetensors" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no encoder at {path}; train one with python -m editgan_core.train.encoder")
        encoder = Encoder.load(path, self.device).train().requires_grad_(True)
        if self.cfg.init and encoder.n_latent < self.generator.n_latent:  # inherited with a grown generator
            encoder = grow.grow_encoder(encoder, self.generator.n_latent)
        if (encoder.n_latent, encoder.style_dim) != (self.generator.n_latent, self.generator.style_dim):
            raise ValueError(f"encoder {path} predicts W+ {encoder.n_latent}x{encoder.style_dim}, the generator "
                             f"takes {self.generator.n_latent}x{self.generator.style_dim}")
        return encoder, torch.optim.Adam(encoder.parameters(), lr=self.cfg.lr * 0.5, betas=(0.9, 0.99))

    def autocast(self):
        """bfloat16 autocast for the adversarial passes; regularisers always run in float32."""
        if self.cfg.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # -- checkpoints ---------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def resume(self) -> None:
        if not self.ckpt_path.exists():
            if self.cfg.init:
                self.init_from(Path(self.cfg.init))
            return
        state = torch.load(self.ckpt_path, map_location=self.device, weights_only=True)
        configured = {o: [g["lr"] for g in o.param_groups] for o in (self.g_optim, self.d_optim, self.e_optim) if o}
        self.generator.load_state_dict(state["g"])
        self.discriminator.load_state_dict(state["d"])
        self.g_ema.load_state_dict(state["g_ema"])
        self.g_optim.load_state_dict(state["g_optim"])
        self.d_optim.load_state_dict(state["d_optim"])
        self.step, self.images_seen = state["step"], state["images_seen"]
        self.mean_path_length.fill_(float(state.get("mean_path_length", 0.0)))
        self.copied = list(state.get("copied", []))
        if self.encoder is not None and "encoder" in state:
            self.encoder.load_state_dict(state["encoder"])
            self.e_optim.load_state_dict(state["e_optim"])
        for optim, rates in configured.items():  # the optimisers' states held the old learning rates:
            for group, lr in zip(optim.param_groups, rates, strict=True):  # a resume trains at the --lr it is given
                group["lr"] = lr
        if self.rank == 0:
            print(f"resumed from {self.ckpt_path} at step {self.step} ({self.images_seen / 1000:.1f} kimg)")

    def init_from(self, folder: Path) -> None:
        """Start from a bundle's or run's exported G (EMA) and D, e.g. to continue the shipped demo model.

        Adam restarts (no moments shipped). A smaller model is grown (``train.grow``), its images not counted.
        """
        g_file = next((folder / n for n in ("generator.safetensors", "generator_ema.safetensors")
                       if (folder / n).is_file()), None)
        d_file = folder / "discriminator.safetensors"
        if g_file is None or not d_file.is_file():
            raise FileNotFoundError(f"{folder} needs generator(_ema).safetensors and discriminator.safetensors")
        g_state, g_meta = read_safetensors(g_file, self.device)
        g_state.pop(LATENT_AVG_KEY, None)  # a bundle generator's stored average w is no weight (save_generator)
        d_state = read_safetensors(d_file, self.device)[0]
        small_size = int(json.loads(g_meta.get("config", "{}")).get("size", self.cfg.size))
        if small_size != self.cfg.size:
            self.copied = grow.grow_models(self.generator, self.discriminator, g_state, d_state, small_size)
            self.g_ema.load_state_dict(self.generator.state_dict())
            if self.rank == 0:
                print(f"grown from {folder} ({small_size} px, {int(g_meta.get('images_seen', 0)) / 1000:.1f} kimg) "
                      f"to {self.cfg.size} px")
            return
        for module in (self.generator, self.g_ema):
            load_checked(module, g_state, str(g_file))
        load_checked(self.discriminator, d_state, str(d_file))
        self.images_seen = int(g_meta.get("images_seen", 0))
        if self.rank == 0:
            print(f"initialised from {folder} ({self.images_seen / 1000:.1f} kimg)")

    def save(self) -> None:
        if self.rank != 0:
            return
        state = {
            "g": self.generator.state_dict(), "d": self.discriminator.state_dict(), "g_ema": self.g_ema.state_dict(),
            "g_optim": self.g_optim.state_dict(), "d_optim": self.d_optim.state_dict(), "step": self.step,
            "images_seen": self.images_seen, "mean_path_length": float(self.mean_path_length), "copied": self.copied,
            "config": json.dumps(asdict(self.cfg)),
        }
        if self.encoder is not None:
            state.update(encoder=self.encoder.state_dict(), e_optim=self.e_optim.state_dict())
        atomic_write(self.ckpt_path, lambda p: torch.save(state, p))
        meta = {"images_seen": str(self.images_seen), "step": str(self.step)}
        self.g_ema.save(self.out / "generator_ema.safetensors", metadata=meta)
        self.discriminator.save(self.out / "discriminator.safetensors", metadata=meta)
        if self.encoder is not None:
            self.encoder.save(self.out / "encoder.safetensors", metadata=meta)

    @torch.no_grad()
    def write_samples(self) -> None:
        if self.rank != 0:
            return
        images = torch.cat([self.g_ema([z], truncation=1.0)[0] for z in self.sample_z.split(8)])
        save_image_grid(images, self.out / "samples" / f"{self.images_seen // 1000:06d}kimg.png", nrow=8)

    # -- one iteration -------------------------------------------------------------------------
    def d_step(self, real: torch.Tensor) -> dict[str, float]:
        cfg, batch = self.cfg, real.shape[0]
        self.generator.requires_grad_(False)
        self.discriminator.requires_grad_(True)
        with self.autocast():
            fake, _ = self.g_ddp(mixing_noise(batch, cfg.style_dim, cfg.mixing, self.device))
            fake_pred = self.d_ddp(fake)
            real_pred = self.d_ddp(real)
        d_loss = F.softplus(fake_pred.float()).mean() + F.softplus(-real_pred.float()).mean()
        self.d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optim.step()
        logs = {"d": d_loss.item(), "real": real_pred.mean().item(), "fake": fake_pred.mean().item()}
        if cfg.r1 > 0 and self.step % cfg.r1_every == 0:
            real.requires_grad_(True)
            real_pred = self.d_ddp(real)
            r1 = d_r1_penalty(real_pred, real)
            self.d_optim.zero_grad(set_to_none=True)
            (cfg.r1 / 2 * r1 * cfg.r1_every + 0 * real_pred[0]).sum().backward()
            self.d_optim.step()
            logs["r1"] = r1.item()
        return logs

    def g_step(self, real: torch.Tensor) -> dict[str, float]:
        cfg, batch = self.cfg, real.shape[0]
        self.generator.requires_grad_(True)
        if self.images_seen < cfg.freeze_grown * 1000:
            grow.hold(self.generator, self.copied)
        self.discriminator.requires_grad_(False)
        with self.autocast():
            fake, _ = self.g_ddp(mixing_noise(batch, cfg.style_dim, cfg.mixing, self.device))
            fake_pred = self.d_ddp(fake)
        g_loss = F.softplus(-fake_pred.float()).mean()
        logs = {"g": g_loss.item()}
        if self.encoder is not None:
            recon_loss, recon_logs = self.recon_loss(real[: cfg.recon_batch or max(1, batch // 2)])
            g_loss = g_loss + recon_loss
            logs.update(recon_logs)
            self.e_optim.zero_grad(set_to_none=True)
        self.g_optim.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_optim.step()
        if self.encoder is not None:
            self.e_optim.step()
        if cfg.path_reg > 0 and self.step % cfg.path_every == 0:
            path_batch = max(1, batch // cfg.path_batch_shrink)
            styles, is_w = grow.path_styles(self.generator, mixing_noise(path_batch, cfg.style_dim, cfg.mixing,
                                                                         self.device))
            fake, latents = self.g_ddp(styles, input_is_latent=is_w, return_latents=True)
            path_loss, self.mean_path_length = g_path_penalty(fake, latents, self.mean_path_length)
            self.g_optim.zero_grad(set_to_none=True)
            (cfg.path_reg * cfg.path_every * path_loss + 0 * fake[0, 0, 0, 0]).backward()
            self.g_optim.step()
            logs["path"] = path_loss.item()
        return logs

    def recon_loss(self, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Mode-regularising term: redraw encoded real images, in L2 and for the discriminator.

        The generator's stored noise is used, as the embedding and the encoder training use it. With
        ``recon_size`` the L2 term compares downsampled copies: detail the encoder cannot see (a grown
        run's 64-px encoder at 128 px) is then left to the adversarial terms rather than drawn as the
        average of what it might be.
        """
        cfg = self.cfg
        real = real.detach()
        with self.autocast():
            wplus = self.e_ddp(real)
            recon, _ = self.g_ddp([wplus], input_is_latent=True, noise=self.generator.stored_noise())
            recon_pred = self.d_ddp(recon) if cfg.recon_adv > 0 else None
        recon = recon.float()
        pair = (recon, real)
        if cfg.recon_size and cfg.recon_size < cfg.size:
            pair = tuple(F.interpolate(x, size=cfg.recon_size, mode="bilinear", antialias=True) for x in pair)
        loss = cfg.recon * masked_l2(*pair).mean()
        if recon_pred is not None:
            loss = loss + cfg.recon_adv * F.softplus(-recon_pred.float()).mean()
        return loss, {"recon_psnr": psnr(recon.detach(), real).mean().item()}

    def ema_beta(self, batch: int) -> float:
        ema_nimg = self.cfg.ema_kimg * 1000
        if self.cfg.ema_rampup:
            ema_nimg = min(ema_nimg, self.images_seen * self.cfg.ema_rampup)
        return 0.5 ** (batch * self.world / max(ema_nimg, 1e-8))

    def train(self) -> None:
        cfg = self.cfg
        total = int(cfg.kimg * 1000)
        batches = make_loader(cfg, self.rank, self.world)
        bar = tqdm(total=total, initial=self.images_seen, unit="img", unit_scale=True, smoothing=0.05,
                   disable=self.rank != 0, dynamic_ncols=True)
        last_save = time.monotonic()
        stop_at = last_save + cfg.minutes * 60 if cfg.minutes else math.inf
        if self.images_seen == 0:
            self.write_samples()
        while self.images_seen < total and time.monotonic() < stop_at:
            real = next(batches).to(self.device, non_blocking=True)
            logs = self.d_step(real)
            logs.update(self.g_step(real))
            accumulate(self.g_ema, self.generator, self.ema_beta(real.shape[0]))
            self.step += 1
            seen_before = self.images_seen
            self.images_seen += real.shape[0] * self.world
            bar.update(real.shape[0] * self.world)
            shown = ("d", "g", "r1", "path", "recon_psnr")
            bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k in shown}, refresh=False)
            self.metrics.add(self.step, self.images_seen, logs)
            if self.step % cfg.ckpt_every == 0 or time.monotonic() - last_save > cfg.ckpt_minutes * 60:
                self.save()
                last_save = time.monotonic()
            if self.images_seen // cfg.sample_every != seen_before // cfg.sample_every:
                self.write_samples()
        self.save()
        self.metrics.write(self.step, self.images_seen)
        self.write_samples()
        bar.close()
        if self.world > 1:
            dist.destroy_process_group()


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = command_parser(__doc__)
    p.add_argument("--out", required=True, help="run directory (checkpoints, samples); reused to resume")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--domain", default="faces", help="procedural domain rendered on the fly")
    src.add_argument("--data", help="folder of training images (any domain)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--preset", choices=sorted(PRESETS), help="architecture preset (default: demo64/demo128 by size)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--kimg", type=float, default=300.0, help="thousands of real images to show D")
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--r1", type=float, help="R1 weight gamma, lazy every 16 steps (default 0.0002*size^2/batch)")
    p.add_argument("--path-reg", type=float, default=2.0, help="path-length weight; 0 disables")
    p.add_argument("--mixing", type=float, default=0.9)
    p.add_argument("--ema-kimg", type=float, default=10.0)
    p.add_argument("--ckpt-every", type=int, default=250, help="steps between checkpoints")
    p.add_argument("--ckpt-minutes", type=float, default=10.0, help="also checkpoint at least this often")
    p.add_argument("--minutes", type=float, help="stop after this much wall time, with a final checkpoint")
    p.add_argument("--log-every", type=int, default=50, help="steps per line of metrics.jsonl")
    p.add_argument("--sample-every", type=int, default=1000, help="images between sample grids")
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA, or CPUs with AVX512-BF16/AMX)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", help="start a new run from a bundle/run folder's generator + discriminator (a smaller "
                                  "model is grown to --size, e.g. checkpoints/faces64 with --preset grow128)")
    p.add_argument("--freeze-grown", type=float, default=0.0, metavar="KIMG",
                   help="with a grown --init: keep the generator layers copied from the smaller model fixed for "
                        "the first KIMG thousand images ('inf': the whole run), so only the new layers learn")
    p.add_argument("--recon", type=float, default=0.0,
                   help="weight of the mode-regularising reconstruction of encoded real images (0: off)")
    p.add_argument("--recon-adv", type=float, default=1.0, help="adversarial weight on those reconstructions")
    p.add_argument("--recon-batch", type=int, help="real images reconstructed per step (default batch // 2)")
    p.add_argument("--recon-size", type=int, help="compare the reconstructions at this resolution (default: "
                                                  "full size); a grown run's 64-px encoder cannot see finer detail")
    p.add_argument("--encoder", help=f"encoder for --recon: an encoder.safetensors, a folder holding one, or "
                                     f"'{NEW_ENCODER}' to train one from scratch alongside")
    p.add_argument("--extremes", type=float, default=0.0,
                   help="--domain only: probability that each editable attribute of a face is at an end of its range")
    setup_logging()
    a = p.parse_args(argv)
    if a.data and a.extremes:
        p.error("--extremes applies to a rendered --domain, not to --data folders")
    if not 0.0 <= a.extremes <= 1.0:
        p.error(f"--extremes is a probability, got {a.extremes}")
    if a.recon > 0 and not a.encoder:
        p.error(f"--recon needs --encoder (an encoder.safetensors, a bundle/run folder holding one, or "
                f"'{NEW_ENCODER}')")
    preset_name = a.preset or {64: "demo64", 128: "demo128"}.get(a.size, "config-f")
    preset = {k: v for k, v in PRESETS[preset_name].items() if k != "size"}
    if "size" in PRESETS[preset_name] and PRESETS[preset_name]["size"] != a.size:
        p.error(f"preset {preset_name} is for {PRESETS[preset_name]['size']} px, not {a.size}")
    given = {k: v for k, v in vars(a).items() if k in {f.name for f in fields(TrainConfig)}}
    return TrainConfig(**{**given, "domain": None if a.data else a.domain, "preset": preset_name, **preset})


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    set_threads(cfg.threads)
    Trainer(cfg).train()


if __name__ == "__main__":
    main()
