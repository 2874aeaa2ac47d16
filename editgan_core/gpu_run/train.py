"""Phase ``train``: the 128-px demo GAN until the deadline, with a shard set in ``$OUT`` every minute.

``train.gan``'s own trainer runs with the mode-regularising reconstruction term and an encoder trained
alongside from scratch (``--encoder new``), the 64-px model's ``--recon 200 --extremes 0.15`` recipe, in
bf16 autocast. Each checkpoint it writes is also packed into ``$OUT`` as shards (``train.shards``:
EMA generator, D and encoder in float16, about 31 MiB, at most ``--max-shards`` files of 16 MiB) with
the latest sample grid; the run stops itself before the deadline with a final checkpoint. Given
``--resume`` (a folder holding a shard set, e.g. one an earlier GPU run returned), it continues that
run with its own stored settings (its preset too, e.g. the grown ``grow128``), taking only the loader
workers, threads and bf16 from the recipe. A rerun on the same machine continues from ``--work``.

    python -m editgan_core.gpu_run.train --out OUT --work W --deadline EPOCH [--resume DIR] [-- train.gan args]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

from editgan_core.gpu_run.plan import SAMPLES
from editgan_core.train import gan, shards
from editgan_core.utils import atomic_write

TRAIN_ARGS = ["--domain", "faces", "--size", "128", "--batch", "32", "--amp", "--recon", "200", "--encoder", "new",
              "--extremes", "0.15", "--workers", "12", "--sample-every", "100000"]
DRY_TRAIN_ARGS = ["--domain", "faces", "--size", "32", "--preset", "tiny32", "--batch", "4", "--recon", "10",
                  "--encoder", "new", "--sample-every", "100000", "--threads", "1"]
FINAL_SAVE_S = 20.0  # kept free before the deadline: the last checkpoint, its shards and the grid
DRY_FINAL_SAVE_S = 4.0


class ShardingTrainer(gan.Trainer):
    """``train.gan``'s trainer whose every checkpoint is also written to ``out`` as shards."""

    def __init__(self, cfg: gan.TrainConfig, out: Path, max_shards: int, shard_bytes: int, result: Path) -> None:
        super().__init__(cfg)
        self.shard_out, self.max_shards, self.shard_bytes, self.result = out, max_shards, shard_bytes, result
        self.started = time.monotonic()
        self.start_images = self.images_seen
        self.saves: list[dict] = []

    def save(self) -> None:
        super().save()
        start = time.monotonic()
        state = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        paths = shards.write_gan_shards(state, self.shard_out, self.shard_bytes, self.max_shards)
        self.write_samples()
        grids = sorted((self.out / "samples").glob("*.png"))
        if grids:
            shutil.copyfile(grids[-1], self.shard_out / SAMPLES)
        self.saves.append({"step": self.step, "images_seen": self.images_seen,
                           "at_s": round(start - self.started, 1), "write_s": round(time.monotonic() - start, 1),
                           "shards": {p.name: p.stat().st_size for p in paths}})
        self.report()

    def report(self) -> None:
        seconds = time.monotonic() - self.started
        result = {"config": json.loads(json.dumps(vars(self.cfg), default=str)), "device": str(self.device),
                  "ops": os.environ.get("EDITGAN_OPS", "auto"), "start_images_seen": self.start_images,
                  "images_seen": self.images_seen, "step": self.step, "seconds": round(seconds, 1),
                  "images_per_s": round((self.images_seen - self.start_images) / max(seconds, 1e-9), 1),
                  "saves": self.saves}
        atomic_write(self.result, lambda p: p.write_text(json.dumps(result, indent=1)))


def config(args: argparse.Namespace, run_dir: Path) -> gan.TrainConfig:
    """The run's settings: the resumed run's own (preset, losses, batch; loader workers, threads and bf16 from
    the recipe), else the recipe plus any extra arguments."""
    recipe = DRY_TRAIN_ARGS if args.dry_run else TRAIN_ARGS
    if args.resume:
        state = shards.unpack_gan_checkpoint(*shards.read_shards(shards.latest_set(args.resume)))
        ckpt = run_dir / "checkpoint.pt"
        done = torch.load(ckpt, map_location="cpu", weights_only=True)["step"] if ckpt.is_file() else -1
        if done < state["step"]:  # a rerun on the same machine may already be further along
            atomic_write(ckpt, lambda p: torch.save(state, p))
        cfg = shards.train_config(state, run_dir)
        machine = gan.parse_args([*recipe, "--out", str(run_dir)])  # a run begun on a CPU gets this machine's
        cfg.workers, cfg.threads, cfg.amp = machine.workers, machine.threads, machine.amp
        return cfg
    return gan.parse_args([*recipe, *args.train_args, "--out", str(run_dir)])


def main(argv: list[str] | None = None) -> None:
    from editgan_core.cli_common import setup_logging

    setup_logging()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="where the shards and the sample grid go ($OUT)")
    p.add_argument("--work", type=Path, required=True, help="scratch folder holding the run")
    p.add_argument("--deadline", type=float, required=True, help="wall clock (epoch seconds) to be done by")
    p.add_argument("--max-shards", type=int, default=3)
    p.add_argument("--shard-mib", type=float, help="largest shard (default 16; dry run: 0.5, to make several)")
    p.add_argument("--ckpt-minutes", type=float, help="default 1 (dry run: 0.05)")
    p.add_argument("--resume", type=Path, help="a folder with a shard set to continue")
    p.add_argument("--result", type=Path, required=True, help="the phase's result JSON")
    p.add_argument("--dry-run", action="store_true", help="the tiny 32-px preset, seconds between checkpoints")
    p.add_argument("train_args", nargs="*", help="after --: more train.gan arguments (not with --resume)")
    args = p.parse_args(argv)
    if args.resume and args.train_args:
        p.error("--resume continues a run with its own settings; give no train.gan arguments with it")
    run_dir = args.work / ("train32" if args.dry_run else "train128")
    cfg = config(args, run_dir)
    cfg.kimg = 1e9  # the deadline ends the run
    cfg.ckpt_every = 10**9  # checkpoints by time only
    cfg.ckpt_minutes = args.ckpt_minutes or (0.05 if args.dry_run else 1.0)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    shard_bytes = int((args.shard_mib or (0.5 if args.dry_run else 16)) * 2**20)
    stop_by = args.deadline - (DRY_FINAL_SAVE_S if args.dry_run else FINAL_SAVE_S)
    try:
        train_until(cfg, stop_by, args.out, args.max_shards, shard_bytes, args.result)
    except RuntimeError as exc:  # a CUDA-op failure must not cost the rest of the training minutes
        if os.environ.get("EDITGAN_OPS") == "native" or not torch.cuda.is_available():
            raise
        print(f"training with the CUDA ops failed ({exc}); continuing from the last checkpoint with the native "
              f"ops", flush=True)
        os.environ["EDITGAN_OPS"] = "native"
        train_until(cfg, stop_by, args.out, args.max_shards, shard_bytes, args.result)


def train_until(cfg: gan.TrainConfig, stop_by: float, out: Path, max_shards: int, shard_bytes: int,
                result: Path) -> None:
    """Train (resuming from the run folder's checkpoint, if any) until ``stop_by`` (epoch seconds)."""
    trainer = ShardingTrainer(cfg, out, max_shards, shard_bytes, result)
    trainer.report()  # a phase cut before its first checkpoint still says how far it got
    cfg.minutes = max(0.01, (stop_by - time.time()) / 60)
    print(f"training {cfg.size} px on {trainer.device} (ops {os.environ.get('EDITGAN_OPS', 'auto')}) for "
          f"{cfg.minutes:.2f} min from {trainer.images_seen} images, checkpoint and shards every "
          f"{cfg.ckpt_minutes:g} min", flush=True)
    trainer.train()

if __name__ == "__main__":
    main()
