"""Two-process torchrun smoke tests on CPU (gloo): DDP GAN training and the sharded batch CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from editgan_core.latents import load_latent

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_gan_training_with_two_gloo_workers(tmp_path: Path) -> None:
    out = tmp_path / "run"
    torchrun("-m", "editgan_core.train.gan", "--domain", "faces", "--size", "32", "--preset", "tiny32", "--batch", "2",
             "--kimg", "0.016", "--out", str(out), "--threads", "1", "--log-every", "1", "--ckpt-every", "100",
             "--sample-every", "1000", cwd=tmp_path)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and state["images_seen"] == 16  # 2 workers x batch 2 per step
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["images_seen"] for r in rows] == [4, 8, 12, 16]  # written once, by rank 0


def test_batch_cli_with_two_workers_writes_each_output_once(tmp_path: Path, tiny_bundle: Path) -> None:
    bundle = tiny_bundle
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    for i in range(5):
        Image.new("RGB", (40, 40), (50 * i, 120, 90)).save(photos / f"p{i}.png")
    done = torchrun("-m", "editgan_core", "apply", str(photos), str(out), "--bundle", str(bundle), "--device", "cpu",
                    "--embed-steps", "1", "--vector", "smile=0.5", cwd=tmp_path)
    assert "(shard 0/2: 3 of 5 inputs)" in done.stdout and "(shard 1/2: 2 of 5 inputs)" in done.stdout
    shards = {i: load_latent(out / f"p{i}.latent.safetensors").run["shard"] for i in range(5)}
    assert shards == {0: "0/2", 1: "1/2", 2: "0/2", 3: "1/2", 4: "0/2"}
    assert sorted(p.name for p in out.glob("*.png")) == [f"p{i}.png" for i in range(5)]
