"""Spreading a batch over workers: ``torchrun`` processes, a Slurm array, or ``--shard K/N`` by hand.

Workers do not talk to each other. Each takes every N-th input of the same sorted list, starting at its
index K, so the shards are disjoint, cover everything and are the same on every machine; outputs are named
after inputs, so no two workers ever write the same file.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count`` (0-based, like torchrun's RANK)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"a shard is K/N with 0 <= K < N, got {self.index}/{self.count}")

    def take(self, items: Sequence[T]) -> list[T]:
        """This worker's part of ``items`` (which every worker must see in the same order)."""
        return list(items[self.index :: self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``K/N`` as a Shard (an argparse type)."""
    index, sep, count = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return Shard(int(index), int(count))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects K/N with 0 <= K < N (e.g. 0/4), got {text!r}") from None


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard a launcher assigned: torchrun's ``RANK``/``WORLD_SIZE``, else a Slurm array task, else None."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return Shard(int(env["RANK"]), int(env["WORLD_SIZE"]))
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        # Array ids may start anywhere and skip (--array=10-40:10); the position in the array is the index.
        first, step = int(env.get("SLURM_ARRAY_TASK_MIN", 0)), int(env.get("SLURM_ARRAY_TASK_STEP", 1) or 1)
        return Shard((int(env["SLURM_ARRAY_TASK_ID"]) - first) // step, int(env["SLURM_ARRAY_TASK_COUNT"]))
    return None


def worker_device(requested: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The device of this worker: ``cuda`` (or no choice, with a GPU present) becomes ``cuda:LOCAL_RANK`` under
    a launcher that sets ``LOCAL_RANK``, so the processes of one machine take one GPU each."""
    env = os.environ if env is None else env
    local = env.get("LOCAL_RANK")
    if local is None or requested not in (None, "cuda"):
        return requested
    if requested == "cuda" or torch.cuda.is_available():
        return f"cuda:{int(local)}"
    return requested
