"""GAN checkpoints as a few size-capped safetensors shards, and back into a resumable run folder.

The lent GPU machine returns at most 8 files of at most 16 MiB each (64 MiB in all), and what travels
to it (the repository plus carried folders) is capped at 64 MiB too. A 128-px run's ``checkpoint.pt``
(G, its EMA, D, the co-trained encoder and three Adam states) is about 200 MiB, so a shard set keeps
only what a continuation cannot cheaply rebuild:

- the EMA generator, D and the encoder, in float16 where a tensor round-trips finitely (equalised-lr
  weights are O(1): float16's 2**-11 relative rounding is a fraction of one Adam step at lr 0.002;
  bfloat16's 2**-8 would be about two);
- not G itself: a continuation restarts G from its EMA, as ``train.gan --init`` does;
- not the Adam moments (G and D use beta1 = 0, so their first moment is the last gradient; the second
  moments forget within about 100 steps at beta2 = 0.99), only the optimisers' settings;
- step, images seen, the path-length mean and the run's TrainConfig.

About 31 MiB for the demo128 preset with an encoder (2 shards). Every shard of a set carries the set's
tag (the training step), its index and the count, so a half-replaced set is recognised and refused.

    python -m editgan_core.train.shards pack runs/faces128 --out shards/        # checkpoint.pt -> shards
    python -m editgan_core.train.shards assemble shards/ --out runs/faces128    # shards -> resumable run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from editgan_core.utils import atomic_write

FORMAT = "editgan-shards/1"
GAN_KIND = "gan-checkpoint/1"
GAN_PREFIX = "gan"
SHARD_BYTES = 16 * 2**20
HEADER_ALLOWANCE = 256 * 2**10  # per shard: safetensors' JSON header (names, offsets) and our metadata
MAX_SHARDS_READ = 64  # bound on what a reader accepts from a folder
FLOAT16_MAX = 65504.0
KEPT_MODELS = ("g_ema", "d", "encoder")
OPTIMISERS = ("g_optim", "d_optim", "e_optim")
NAME = re.compile(r"^(?P<prefix>[A-Za-z0-9_]+)-(?P<tag>[A-Za-z0-9]+)-(?P<index>\d+)of(?P<count>\d+)\.safetensors$")


class ShardError(ValueError):
    """Shards that cannot be written within the limits or read back as one complete set."""


def shard_name(prefix: str, tag: str, index: int, count: int) -> str:
    return f"{prefix}-{tag}-{index}of{count}.safetensors"


def plan_shards(tensors: Mapping[str, torch.Tensor], max_bytes: int) -> list[list[str]]:
    """Keys grouped in order into shards whose tensor bytes stay under ``max_bytes`` minus the header room."""
    budget = max_bytes - HEADER_ALLOWANCE
    groups: list[list[str]] = [[]]
    used = 0
    for key, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        if size > budget:
            raise ShardError(f"tensor {key} has {size} bytes, more than a {max_bytes}-byte shard holds")
        if used + size > budget and groups[-1]:
            groups.append([])
            used = 0
        groups[-1].append(key)
        used += size
    return groups


def write_shards(tensors: Mapping[str, torch.Tensor], folder: Path, prefix: str, tag: str,
                 metadata: Mapping[str, str], max_bytes: int = SHARD_BYTES, max_files: int | None = None) -> list[Path]:
    """Write one shard set, then delete every other shard of ``prefix`` in ``folder``; returns the new paths."""
    if not (NAME.match(shard_name(prefix, tag, 1, 1))):
        raise ShardError(f"prefix {prefix!r} and tag {tag!r} must be letters, digits (and _ in the prefix)")
    groups = plan_shards(tensors, max_bytes)
    if max_files is not None and len(groups) > max_files:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        raise ShardError(f"{total} bytes need {len(groups)} shards of {max_bytes} bytes; only {max_files} allowed")
    folder.mkdir(parents=True, exist_ok=True)
    common = {"format": FORMAT, "tag": tag, "count": str(len(groups)), **metadata}
    paths = []
    for index, keys in enumerate(groups, 1):
        path = folder / shard_name(prefix, tag, index, len(groups))
        part = {k: tensors[k].detach().cpu().contiguous() for k in keys}
        meta = {**common, "index": str(index)}
        atomic_write(path, lambda p, part=part, meta=meta: save_file(part, str(p), metadata=meta))
        if path.stat().st_size > max_bytes:
            raise ShardError(f"{path.name} came out at {path.stat().st_size} bytes, over {max_bytes}")
        paths.append(path)
    for path, match in _shard_files(folder):
        if match["prefix"] == prefix and path not in paths:  # older sets, and leftovers of an interrupted one
            path.unlink(missing_ok=True)
    return paths


def _shard_files(folder: Path) -> list[tuple[Path, re.Match]]:
    return [(p, m) for p in sorted(folder.iterdir()) if p.is_file() and (m := NAME.match(p.name))]


def complete_sets(folder: Path, prefix: str) -> dict[str, list[Path]]:
    """Tag -> shard paths in order, for every set of ``prefix`` in ``folder`` that has all its shards."""
    sets: dict[str, dict[int, Path]] = {}
    counts: dict[str, set[int]] = {}
    for path, match in _shard_files(folder):
        if match["prefix"] == prefix:
            sets.setdefault(match["tag"], {})[int(match["index"])] = path
            counts.setdefault(match["tag"], set()).add(int(match["count"]))
    return {tag: [found[i] for i in sorted(found)] for tag, found in sets.items()
            if len(counts[tag]) == 1 and set(found) == set(range(1, next(iter(counts[tag])) + 1))}


def latest_set(folder: str | Path, prefix: str = GAN_PREFIX) -> list[Path]:
    """The complete set with the highest tag (tags are zero-padded steps); a clear error when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ShardError(f"{folder} is not a folder of shards")
    sets = complete_sets(folder, prefix)
    if not sets:
        raise ShardError(f"no complete '{prefix}-<tag>-<i>of<n>.safetensors' set in {folder}")
    return sets[max(sets)]


def read_shards(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors of one set and its metadata (without the per-shard index); checks the set is whole."""
    if not paths or len(paths) > MAX_SHARDS_READ:
        raise ShardError(f"expected 1..{MAX_SHARDS_READ} shards, got {len(paths)}")
    tensors: dict[str, torch.Tensor] = {}
    common: dict[str, str] | None = None
    indices = set()
    for path in paths:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        if meta.get("format") != FORMAT:
            raise ShardError(f"{path} is not an {FORMAT} shard")
        indices.add(int(meta.pop("index", 0)))
        if common is None:
            common = meta
        elif meta != common:
            raise ShardError(f"{path.name} belongs to another set than {paths[0].name} (mixed checkpoints)")
        part = load_file(str(path))
        if set(part) & set(tensors):
            raise ShardError(f"{path.name} repeats tensors of another shard")
        tensors.update(part)
    assert common is not None
    if indices != set(range(1, int(common["count"]) + 1)):
        raise ShardError(f"set {common['tag']} is incomplete: has shards {sorted(indices)} of {common['count']}")
    return tensors, common


# --- GAN checkpoints ------------------------------------------------------------------------------


def compact(tensor: torch.Tensor) -> torch.Tensor:
    """float32 -> float16 when every value fits float16's range; anything else unchanged."""
    if tensor.dtype != torch.float32 or tensor.numel() == 0:
        return tensor
    if not torch.isfinite(tensor).all() or tensor.abs().max().item() >= FLOAT16_MAX:
        return tensor
    return tensor.half()


def pack_gan_checkpoint(state: Mapping) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A ``train.gan`` checkpoint as shard tensors and metadata (see the module docstring for what is kept)."""
    missing = [k for k in (*KEPT_MODELS[:2], "config", "step", "images_seen") if k not in state]
    if missing:
        raise ShardError(f"not a train.gan checkpoint: no {', '.join(missing)}")
    tensors = {f"{model}/{key}": compact(value) for model in KEPT_MODELS if model in state
               for key, value in state[model].items()}
    groups = {name: state[name]["param_groups"] for name in OPTIMISERS if name in state}
    metadata = {"kind": GAN_KIND, "step": str(int(state["step"])), "images_seen": str(int(state["images_seen"])),
                "mean_path_length": repr(float(state.get("mean_path_length", 0.0))), "config": state["config"],
                "optimisers": json.dumps(groups), "copied": json.dumps(list(state.get("copied", [])))}
    return tensors, metadata


def unpack_gan_checkpoint(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> dict:
    """Shard contents -> a checkpoint ``train.gan`` resumes from: G = its EMA, Adam moments empty."""
    if metadata.get("kind") != GAN_KIND:
        raise ShardError(f"the shards hold {metadata.get('kind')!r}, not a GAN checkpoint ({GAN_KIND})")
    models: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        model, _, key = name.partition("/")
        if model not in KEPT_MODELS:
            raise ShardError(f"unexpected tensor {name!r} in a GAN shard set")
        models.setdefault(model, {})[key] = tensor.float() if tensor.is_floating_point() else tensor
    state = {"g": {k: v.clone() for k, v in models["g_ema"].items()}, **models,
             "step": int(metadata["step"]), "images_seen": int(metadata["images_seen"]),
             "mean_path_length": float(metadata["mean_path_length"]), "config": metadata["config"],
             "copied": json.loads(metadata.get("copied", "[]"))}
    for name, groups in json.loads(metadata["optimisers"]).items():
        state[name] = {"state": {}, "param_groups": groups}
    return state


def write_gan_shards(state: Mapping, folder: Path, max_bytes: int = SHARD_BYTES,
                     max_files: int | None = None) -> list[Path]:
    """Pack a ``train.gan`` checkpoint and write it as the newest shard set (tag: zero-padded step)."""
    tensors, metadata = pack_gan_checkpoint(state)
    return write_shards(tensors, folder, GAN_PREFIX, f"s{int(state['step']):09d}", metadata, max_bytes, max_files)


def train_config(state: Mapping, out: str | Path):
    """The run's TrainConfig from a checkpoint, writing to ``out``; a co-trained encoder resumes from the state."""
    from editgan_core.train.gan import NEW_ENCODER, TrainConfig

    stored = json.loads(state["config"])
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in stored.items() if k in known}
    if values.get("channels"):
        values["channels"] = {int(k): int(v) for k, v in values["channels"].items()}
    values.update(out=str(out), init=None)
    if "encoder" in state:
        values["encoder"] = NEW_ENCODER  # its weights come from the checkpoint, wherever it started
    return TrainConfig(**values)


FLAGS = {"size": "--size", "preset": "--preset", "batch": "--batch", "lr": "--lr", "r1": "--r1",
         "path_reg": "--path-reg", "mixing": "--mixing", "ema_kimg": "--ema-kimg", "recon": "--recon",
         "recon_adv": "--recon-adv", "recon_batch": "--recon-batch", "recon_size": "--recon-size",
         "encoder": "--encoder", "extremes": "--extremes", "seed": "--seed", "workers": "--workers",
         "freeze_grown": "--freeze-grown"}


def continue_args(cfg) -> list[str]:
    """``train.gan`` arguments that rebuild ``cfg`` (with ``--kimg`` to set by the caller)."""
    args = ["--out", str(cfg.out), *(["--data", cfg.data] if cfg.data else ["--domain", str(cfg.domain)])]
    for field, flag in FLAGS.items():
        value = getattr(cfg, field)
        if value is not None and not (field in ("recon", "extremes") and not value):
            args += [flag, str(value)]
    return args + (["--amp"] if cfg.amp else [])


def assemble(shards: str | Path, out: str | Path) -> list[str]:
    """Write ``out/checkpoint.pt`` from the newest shard set and the run's exports (EMA generator, D,
    encoder, config) through the trainer's own save; returns the ``train.gan`` arguments to continue."""
    from editgan_core.train.gan import Trainer

    tensors, metadata = read_shards(latest_set(shards))
    state = unpack_gan_checkpoint(tensors, metadata)
    out = Path(out)
    atomic_write(out / "checkpoint.pt", lambda p: torch.save(state, p))
    cfg = train_config(state, out)
    Trainer(cfg).save()
    return continue_args(cfg)


def main(argv: list[str] | None = None) -> None:
    from editgan_core.cli_common import setup_logging

    setup_logging()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="a run folder's checkpoint.pt -> shards")
    pack.add_argument("run", type=Path)
    pack.add_argument("--out", type=Path, required=True)
    pack.add_argument("--max-mib", type=float, default=SHARD_BYTES / 2**20, help="largest shard (MiB)")
    put = sub.add_parser("assemble", help="the newest complete shard set -> a run folder train.gan resumes")
    put.add_argument("shards", type=Path)
    put.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        if args.command == "pack":
            state = torch.load(args.run / "checkpoint.pt", map_location="cpu", weights_only=True)
            for path in write_gan_shards(state, args.out, int(args.max_mib * 2**20)):
                print(f"{path}  {path.stat().st_size / 2**20:.2f} MiB")
        else:
            argv_continue = assemble(args.shards, args.out)
            print(f"{args.out} is resumable; continue with:\n  python -m editgan_core.train.gan "
                  f"{shlex.join(argv_continue)} --kimg <total kimg>")
    except (ShardError, FileNotFoundError) as exc:
        p.error(str(exc))


if __name__ == "__main__":
    main()
