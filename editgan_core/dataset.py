"""DatasetGAN's purpose: generated images with their label maps, as many as wanted, from a 16-label segmenter.

    python -m editgan_core dataset --bundle B --n 1000 --out DIR [--latents] [--max-disagreement 0.5]

Item ``i`` is the model's face of seed ``--seed + i`` (the studio's "Sample face" shows the same one at
the same truncation), written as ``NNNNNN.png`` with ``NNNNNN.labels.png`` (class ids as grey values, what
``train.segmenter --annotations`` reads), ``previews/NNNNNN.png`` (the labels in the class colours),
optionally ``NNNNNN.latent.safetensors``, and last ``NNNNNN.json`` (its seed, score and the run's
settings), which marks the item done. ``DIR/dataset.json`` names the classes and the settings.

As in DatasetGAN, a draw whose labels the segmentation ensemble disagrees on is dropped: its score is
the mean, over the tenth of its pixels where the members disagree most, of the fraction of members
whose label differs from the ensemble's. DatasetGAN drops its most uncertain tenth; by default the
threshold is the score that the first draws of items 0..63 exceed that often (``--drop-fraction``),
computed alike by every worker, or a fixed ``--max-disagreement``. A dropped draw is replaced by the
item's next draw (seed + k * 1,000,000), so ``--n`` items are written and every item's draws are fixed
by its index alone: reruns resume, ``--shard K/N`` workers (or torchrun / a Slurm array, see ``editgan_core.sharding``)
share nothing, and a larger ``--n`` extends a dataset. Outputs made with other settings are refused
unless ``--overwrite`` redoes them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from editgan_core.bundle import MANIFEST
from editgan_core.cli import file_digest
from editgan_core.cli_common import add_common_args, open_pipeline, parse_command
from editgan_core.latents import SUFFIX as LATENT_SUFFIX
from editgan_core.latents import LatentFile, save_latent
from editgan_core.pipeline import EditGANPipeline
from editgan_core.sharding import Shard, parse_shard, shard_from_env, worker_device
from editgan_core.utils import atomic_write, tensor_to_uint8

FORMAT = "editgan-dataset/1"
RECORD = "dataset.json"
PREVIEWS = "previews"
DRAW_STRIDE = 1_000_000  # draw k of item i has seed seed + i + k * DRAW_STRIDE: items never share a draw
MAX_ITEMS = DRAW_STRIDE
MAX_DRAWS = 100
DEFAULT_DROP_FRACTION = 0.1  # DatasetGAN leaves out its most uncertain tenth of samples
CALIBRATION_ITEMS = 64  # first draws whose scores set the threshold for --drop-fraction
DEFAULT_DRAWS = 10
TOP_FRACTION = 0.1  # DatasetGAN scores an image by its most uncertain tenth of pixels
BATCH = 8


@dataclass(frozen=True)
class DatasetSettings:
    """What decides every item's content; a folder holds items of one set of settings only."""

    truncation: float = 0.7
    seed: int = 0
    max_disagreement: float | None = None  # a fixed threshold, else calibrated from drop_fraction
    drop_fraction: float = DEFAULT_DROP_FRACTION

    def check(self) -> None:
        if not 0.0 <= self.truncation <= 1.0:
            raise ValueError(f"truncation must be in [0, 1], got {self.truncation}")
        if self.max_disagreement is not None and not 0.0 <= self.max_disagreement <= 1.0:
            raise ValueError(f"--max-disagreement must be in [0, 1], got {self.max_disagreement}")
        if not 0.0 <= self.drop_fraction < 1.0:
            raise ValueError(f"--drop-fraction must be in [0, 1), got {self.drop_fraction}")
        if not 0 <= self.seed < 2**31:
            raise ValueError(f"the seed must be in [0, 2^31), got {self.seed}")


@dataclass
class DatasetReport:
    written: int = 0
    done: int = 0  # already there from an earlier run with the same settings
    dropped: int = 0  # draws left out for disagreement
    failed: list[int] = field(default_factory=list)  # items without an accepted draw
    threshold: float = 0.0  # the score above which draws were dropped
    stopped: bool = False


def run_record(pipeline: EditGANPipeline, settings: DatasetSettings) -> dict[str, Any]:
    """The settings as recorded in every item and in ``dataset.json`` (the manifest changes with any model file)."""
    record = {"format": FORMAT, "bundle_id": pipeline.bundle.id,
              "bundle_manifest_sha256": file_digest(pipeline.bundle.root / MANIFEST),
              "score": f"ensemble disagreement, mean of the top {TOP_FRACTION:g} of pixels", **asdict(settings)}
    if settings.max_disagreement is not None:
        record["drop_fraction"] = None
    else:
        record["calibration_items"] = CALIBRATION_ITEMS
    return record


def threshold(pipeline: EditGANPipeline, settings: DatasetSettings, batch: int = BATCH) -> float:
    """The score above which a draw is dropped: fixed, or the (1 - drop_fraction) quantile of the first draws
    of items 0..CALIBRATION_ITEMS-1 (the same on every worker and in every rerun)."""
    if settings.max_disagreement is not None:
        return settings.max_disagreement
    if settings.drop_fraction == 0:
        return 1.0
    scores = []
    for start in range(0, CALIBRATION_ITEMS, batch):
        seeds = range(settings.seed + start, settings.seed + min(start + batch, CALIBRATION_ITEMS))
        scores.append(label_draws(pipeline, torch.cat([pipeline.sample_latent(s, settings.truncation)
                                                       for s in seeds]))[2])
    return float(np.quantile(np.concatenate(scores), 1.0 - settings.drop_fraction))


def item_stem(index: int) -> str:
    return f"{index:06d}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _files(out: Path, stem: str, latents: bool) -> list[Path]:
    files = [out / f"{stem}.png", out / f"{stem}.labels.png", out / PREVIEWS / f"{stem}.png"]
    return [*files, out / f"{stem}{LATENT_SUFFIX}"] if latents else files


def _differences(old: dict[str, Any], new: dict[str, Any], limit: int = 2) -> str:
    """'key was A, now B; ...' for the settings that differ ("" when none do)."""
    differ = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    return "; ".join(f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in differ[:limit])


def item_state(out: Path, index: int, record: dict[str, Any], latents: bool) -> str | None:
    """None: to do; "": done with ``record``'s settings; else how its recorded settings differ."""
    stem = item_stem(index)
    path = out / f"{stem}.json"
    if not path.exists():
        return None
    written = _read_json(path)
    if written is None or not isinstance(written.get("settings"), dict):
        return f"{path.name} is unreadable"
    differ = _differences(written["settings"], record)
    if differ:
        return differ
    return "" if all(p.exists() for p in _files(out, stem, latents)) else None


def plan_items(out: Path, indices: Sequence[int], record: dict[str, Any], latents: bool
               ) -> tuple[list[int], int, list[str]]:
    """(items to make, items already done, items made with other settings and how)."""
    todo, done, stale = [], 0, []
    for index in indices:
        state = item_state(out, index, record, latents)
        if state == "":
            done += 1
            continue
        if state:
            stale.append(f"{item_stem(index)}: {state}")
        todo.append(index)
    return todo, done, stale


def folder_conflict(out: Path, record: dict[str, Any]) -> str | None:
    """How ``out``'s ``dataset.json`` differs from ``record`` (None when it matches or does not exist)."""
    existing = _read_json(out / RECORD) if (out / RECORD).exists() else {"settings": record}
    if existing is None or not isinstance(existing.get("settings"), dict):
        return f"{RECORD} is unreadable"
    return _differences(existing["settings"], record, 3) or None


def write_folder_record(pipeline: EditGANPipeline, out: Path, record: dict[str, Any]) -> None:
    classes = [{"id": c.id, "name": c.name, "color": list(c.color)} for c in pipeline.bundle.classes]
    text = json.dumps({"settings": record, "resolution": pipeline.resolution, "classes": classes,
                       "layout": {"image": "NNNNNN.png", "labels": "NNNNNN.labels.png (grey = class id)",
                                  "preview": f"{PREVIEWS}/NNNNNN.png", "latent": f"NNNNNN{LATENT_SUFFIX}",
                                  "record": "NNNNNN.json"}}, indent=2)
    atomic_write(out / RECORD, lambda p: p.write_text(text))


@torch.no_grad()
def label_draws(pipeline: EditGANPipeline, latents: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (B, H, W, 3), label maps (B, H, W) and disagreement scores (B,) of W+ latents (B, n, d)."""
    out = pipeline.generator.synthesis(latents.to(pipeline.device), noise=pipeline.noise, return_features=True)
    labels, pixels = pipeline.segmenter.predict_with_disagreement(out.features)
    pixels = pixels.flatten(1)
    worst = pixels.topk(max(1, int(pixels.shape[1] * TOP_FRACTION)), dim=1).values.mean(1)
    return tensor_to_uint8(out.image), labels.to(torch.uint8).cpu().numpy(), worst.cpu().numpy()


def write_item(pipeline: EditGANPipeline, out: Path, index: int, draw: dict[str, Any], image: np.ndarray,
               labels: np.ndarray, latent: torch.Tensor | None, record: dict[str, Any]) -> None:
    """The item's files, its ``.json`` last: an item interrupted half-way has no record and is redone."""
    stem = item_stem(index)
    (out / f"{stem}.json").unlink(missing_ok=True)
    colour = pipeline.bundle.palette[labels]
    for path, pixels in ((out / f"{stem}.png", image), (out / f"{stem}.labels.png", labels),
                         (out / PREVIEWS / f"{stem}.png", colour)):
        atomic_write(path, lambda p, a=pixels: Image.fromarray(a).save(p, format="PNG"))
    if latent is not None:
        source = {"seed": draw["seed"], "truncation": record["truncation"], "dataset_item": stem}
        save_latent(LatentFile(latent=latent, bundle_id=pipeline.bundle.id, source=source),
                    out / f"{stem}{LATENT_SUFFIX}")
    text = json.dumps({"item": stem, **draw, "settings": record}, indent=1)
    atomic_write(out / f"{stem}.json", lambda p: p.write_text(text))


def generate(pipeline: EditGANPipeline, out: Path, todo: Sequence[int], settings: DatasetSettings,
             record: dict[str, Any], latents: bool = False, max_draws: int = DEFAULT_DRAWS, batch: int = BATCH,
             on_item: Callable[[int, int], None] | None = None, should_stop: Callable[[], bool] | None = None,
             show_progress: bool = True) -> DatasetReport:
    """Draw, label, score and write the items ``todo``; ``on_item(finished, total)`` after each one."""
    if pipeline.segmenter is None:
        raise ValueError(f"model '{pipeline.bundle.id}' has no segmentation branch to label the images with")
    (out / PREVIEWS).mkdir(parents=True, exist_ok=True)
    write_folder_record(pipeline, out, record)
    report = DatasetReport(threshold=threshold(pipeline, settings, batch) if todo else 0.0)
    pending = deque((index, 0) for index in todo)
    rejected: dict[int, list[list[float]]] = {}
    bar = tqdm(total=len(todo), desc="dataset", unit="item", disable=not show_progress)
    while pending:
        if should_stop is not None and should_stop():
            report.stopped = True
            break
        draws = [pending.popleft() for _ in range(min(batch, len(pending)))]
        seeds = [settings.seed + index + k * DRAW_STRIDE for index, k in draws]
        w = torch.cat([pipeline.sample_latent(s, settings.truncation) for s in seeds])
        images, labels, scores = label_draws(pipeline, w)
        for j, ((index, k), seed) in enumerate(zip(draws, seeds, strict=True)):
            score = float(scores[j])
            if score > report.threshold:
                report.dropped += 1
                rejected.setdefault(index, []).append([seed, round(score, 4)])
                if k + 1 < max_draws:
                    pending.append((index, k + 1))
                    continue
                report.failed.append(index)
            else:
                draw = {"seed": seed, "disagreement": round(score, 4), "threshold": round(report.threshold, 4),
                        "rejected": rejected.pop(index, [])}
                write_item(pipeline, out, index, draw, images[j], labels[j], w[j:j + 1] if latents else None, record)
                report.written += 1
            bar.update(1)
            if on_item is not None:
                on_item(report.written + len(report.failed), len(todo))
    bar.close()
    return report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="editgan dataset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, required=True, help=f"items to write (1..{MAX_ITEMS})")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; rerun to resume)")
    p.add_argument("--latents", action="store_true", help="also write each item's W+ latent file")
    p.add_argument("--drop-fraction", type=float, default=DEFAULT_DROP_FRACTION,
                   help="drop about this share of draws, the most uncertain (default %(default)s, as DatasetGAN)")
    p.add_argument("--max-disagreement", type=float,
                   help="instead, drop draws scoring above this fixed threshold (0..1; 1 keeps all)")
    p.add_argument("--max-draws", type=int, default=DEFAULT_DRAWS,
                   help=f"draws per item before it is given up (1..{MAX_DRAWS}; default %(default)s)")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="item i is the face of seed SEED + i (default %(default)s)")
    p.add_argument("--batch", type=int, default=BATCH, help="draws rendered together (default %(default)s)")
    p.add_argument("--shard", type=parse_shard, help="K/N: write every N-th item starting at the K-th (0-based); "
                   "default RANK/WORLD_SIZE under torchrun, the Slurm array task, else all")
    p.add_argument("--overwrite", action="store_true", help="redo items OUT holds from a run with other settings")
    return add_common_args(p, bundle=True, device=True)


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> DatasetSettings:
    if not 1 <= args.n <= MAX_ITEMS:
        p.error(f"--n must be in 1..{MAX_ITEMS}, got {args.n}")
    if not 1 <= args.max_draws <= MAX_DRAWS:
        p.error(f"--max-draws must be in 1..{MAX_DRAWS}, got {args.max_draws}")
    if not 1 <= args.batch <= 256:
        p.error(f"--batch must be in 1..256, got {args.batch}")
    if args.out.exists() and not args.out.is_dir():
        p.error(f"{args.out} exists and is not a folder")
    settings = DatasetSettings(args.truncation, args.seed, args.max_disagreement, args.drop_fraction)
    try:
        settings.check()
    except ValueError as exc:
        p.error(str(exc))
    return settings


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = parse_command(p, argv)
    settings = _check_args(p, args)
    shard: Shard | None = args.shard or shard_from_env()
    args.device = worker_device(args.device)
    pipeline = open_pipeline(args, lpips=False)
    if pipeline.segmenter is None:
        p.error(f"model '{pipeline.bundle.id}' has no segmentation branch: train one first (train.segmenter)")
    record = run_record(pipeline, settings)
    conflict = folder_conflict(args.out, record)
    indices = shard.take(range(args.n)) if shard else list(range(args.n))
    todo, done, stale = plan_items(args.out, indices, record, args.latents)
    if (conflict or stale) and not args.overwrite:
        example = f"{RECORD}: {conflict}" if conflict else stale[0]
        print(f"error: {args.out} holds a dataset made with other settings ({example}); pass --overwrite to redo "
              f"its items, or choose another --out", file=sys.stderr)
        return 2
    report = generate(pipeline, args.out, todo, settings, record, args.latents, args.max_draws, args.batch)
    part = f" (shard {shard}: {len(indices)} of {args.n} items)" if shard else ""
    dropped = f", {report.dropped} draw(s) dropped for disagreement > {report.threshold:.3f}" if todo else ""
    print(f"{report.written} written ({len(stale)} redone), {done} already done{dropped}{part}")
    if report.failed:
        print(f"error: {len(report.failed)} item(s) had no draw under the threshold in {args.max_draws} draws "
              f"(e.g. {item_stem(report.failed[0])}); raise --max-disagreement or --max-draws", file=sys.stderr)
        return 1
    return 0


def zip_dataset(folder: Path, dest: Path) -> Path:
    """One zip of the dataset folder (the studio's download)."""
    return Path(shutil.make_archive(str(dest.with_suffix("")), "zip", root_dir=folder))
