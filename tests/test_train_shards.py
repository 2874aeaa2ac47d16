"""Checkpoint shards stay within their size and count limits, are read back only as whole sets, and a GAN run
packed into shards resumes from them (also ``train.gan``'s fresh co-trained encoder and its time budget)."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from editgan_core.train import gan, shards


def tensors(count: int = 12, numel: int = 20_000) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {f"t{i:02d}": torch.randn(numel, generator=gen) for i in range(count)}


def test_shards_respect_the_size_limit_and_round_trip(tmp_path):
    data = tensors()
    limit = shards.HEADER_ALLOWANCE + 200_000  # two 80 kB tensors per shard
    paths = shards.write_shards(data, tmp_path, "demo", "s001", {"note": "x"}, max_bytes=limit)
    assert len(paths) == 6 and all(p.stat().st_size <= limit for p in paths)
    back, meta = shards.read_shards(shards.latest_set(tmp_path, "demo"))
    assert meta["note"] == "x" and meta["count"] == "6"
    assert set(back) == set(data) and all(torch.equal(back[k], v) for k, v in data.items())
    with pytest.raises(shards.ShardError, match="only 3 allowed"):
        shards.write_shards(data, tmp_path, "demo", "s002", {}, max_bytes=limit, max_files=3)
    with pytest.raises(shards.ShardError, match="more than"):
        shards.write_shards({"big": torch.zeros(100_000)}, tmp_path, "demo", "s003", {}, max_bytes=limit)


def test_a_new_set_replaces_the_old_and_mixed_or_partial_sets_are_refused(tmp_path):
    limit = shards.HEADER_ALLOWANCE + 200_000
    first = shards.write_shards(tensors(), tmp_path / "a", "gan", "s001", {}, max_bytes=limit)
    kept = tmp_path / "kept"
    kept.mkdir()
    for p in first:
        shutil.copy(p, kept / p.name)
    second = shards.write_shards(tensors(count=4), tmp_path / "a", "gan", "s002", {}, max_bytes=limit)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [p.name for p in second]
    with pytest.raises(shards.ShardError, match="another set"):
        shards.read_shards([kept / first[0].name, second[1]])
    (kept / first[-1].name).unlink()  # a set cut off mid-write is not offered
    assert shards.complete_sets(kept, "gan") == {}
    with pytest.raises(shards.ShardError, match="no complete"):
        shards.latest_set(kept)


def test_compact_keeps_what_float16_cannot_hold():
    assert shards.compact(torch.ones(3)).dtype == torch.float16
    assert shards.compact(torch.tensor([1.0, 1e5])).dtype == torch.float32
    assert shards.compact(torch.tensor([float("nan")])).dtype == torch.float32
    assert shards.compact(torch.arange(3)).dtype == torch.int64


def run(out, kimg, *extra):
    gan.main(["--domain", "faces", "--size", "32", "--preset", "tiny32", "--out", str(out), "--batch", "4",
              "--kimg", str(kimg), "--ckpt-every", "1", "--sample-every", "8", "--threads", "1", *extra])


def test_a_recon_run_with_a_fresh_encoder_resumes_from_its_shards(tmp_path):
    first = tmp_path / "first"
    run(first, 0.008, "--recon", "10", "--encoder", gan.NEW_ENCODER)  # 2 steps, encoder from scratch
    state = torch.load(first / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and "encoder" in state and state["e_optim"]["state"]
    paths = shards.write_gan_shards(state, tmp_path / "shards", max_bytes=shards.HEADER_ALLOWANCE + 300_000)
    assert len(paths) >= 2
    second = tmp_path / "second"
    args = shards.assemble(tmp_path / "shards", second)
    resumed = torch.load(second / "checkpoint.pt", weights_only=True)
    assert resumed["step"] == 2 and resumed["images_seen"] == 8
    for key, value in state["g_ema"].items():  # G restarts from the EMA, both float16-rounded
        torch.testing.assert_close(resumed["g"][key], value, rtol=2e-3, atol=1e-6)
        torch.testing.assert_close(resumed["g_ema"][key], value, rtol=2e-3, atol=1e-6)
    cfg = shards.train_config(resumed, second)
    rebuilt = dataclasses.asdict(gan.parse_args([*args, "--kimg", str(cfg.kimg)]))
    operational = {"ckpt_every", "sample_every", "threads"}  # how a run reports, not what it trains
    assert {k: v for k, v in rebuilt.items() if k not in operational} == \
        {k: v for k, v in dataclasses.asdict(cfg).items() if k not in operational}
    gan.main([*args, "--kimg", "0.012", "--threads", "1"])
    assert torch.load(second / "checkpoint.pt", weights_only=True)["step"] == 3


def test_minutes_stops_a_run_with_a_checkpoint(tmp_path):
    run(tmp_path / "run", 1000, "--minutes", "0.0001")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] <= 2  # stopped by time long before 1000 kimg, and saved
