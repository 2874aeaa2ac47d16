"""The batch CLI over many workers: shards from the launcher's environment, disjoint outputs, recorded
settings, and reruns that never silently keep outputs made with other settings."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from PIL import Image

from editgan_core.cli import main as cli_main
from editgan_core.latents import load_latent
from editgan_core.sharding import Shard, parse_shard, shard_from_env, worker_device
from editgan_core.vectors import EditVector, save_vector


def test_shards_partition_sorted_inputs_disjointly() -> None:
    items = [f"img{i:02d}" for i in range(11)]
    parts = [Shard(k, 3).take(items) for k in range(3)]
    assert sorted(item for part in parts for item in part) == items
    assert all(not set(a) & set(b) for a in parts for b in parts if a is not b)
    assert parts[1] == ["img01", "img04", "img07", "img10"]
    assert Shard(0, 1).take(items) == items and Shard(5, 20).take(items) == ["img05"]


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1", "a/b", "0/0"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="K/N"):
        parse_shard(text)


def test_shard_and_device_come_from_the_launcher() -> None:
    assert parse_shard("2/4") == Shard(2, 4)
    assert shard_from_env({}) is None
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Shard(1, 2)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(3, 4)
    slurm = {"SLURM_ARRAY_TASK_ID": "30", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "10",
             "SLURM_ARRAY_TASK_STEP": "10"}  # --array=10-40:10
    assert shard_from_env(slurm) == Shard(2, 4)
    assert worker_device("cuda", {"LOCAL_RANK": "3"}) == "cuda:3"
    assert worker_device("cuda:0", {"LOCAL_RANK": "3"}) == "cuda:0"  # an explicit index is kept
    assert worker_device("cpu", {"LOCAL_RANK": "3"}) == "cpu"
    assert worker_device("cuda", {}) == "cuda"


def _photos(folder, n: int):
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (40, 40), (40 * i, 150, 100)).save(folder / f"p{i}.png")
    return folder


def test_workers_share_a_folder_and_reruns_compare_settings(tmp_path, tiny_bundle, capsys, monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    photos, out = _photos(tmp_path / "photos", 5), tmp_path / "out"
    common = ["apply", str(photos), str(out), "--bundle", str(tiny_bundle), "--device", "cpu", "--embed-steps", "1"]
    assert cli_main([*common, "--vector", "smile=0.5", "--shard", "1/2"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["p1.png", "p3.png"]
    monkeypatch.setenv("RANK", "0")  # the other worker, as torchrun would start it
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli_main([*common, "--vector", "smile=0.5"]) == 0
    assert "(shard 0/2: 3 of 5 inputs)" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == [f"p{i}.png" for i in range(5)]
    record = load_latent(out / "p2.latent.safetensors").run
    assert record["shard"] == "0/2" and record["input"] == "p2.png" and record["bundle_id"] == "tiny-test"
    assert [v[:2] for v in record["vectors"]] == [["smile", 0.5]] and record["embed_steps"] == 1
    assert load_latent(out / "p1.latent.safetensors").run["shard"] == "1/2"
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")

    # the same settings in one worker: everything is done already
    assert cli_main([*common, "--vector", "smile=0.5"]) == 0
    assert "0 written (0 redone), 5 already done" in capsys.readouterr().out

    # other settings: refused before any work, outputs untouched
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert cli_main([*common, "--vector", "smile=0.8"]) == 2
    err = capsys.readouterr().err
    assert "5 output(s)" in err and "made with other settings" in err and "--overwrite" in err and "0.5" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    # a changed input is noticed through its digest; --overwrite redoes only what differs
    Image.new("RGB", (40, 40), (0, 0, 255)).save(photos / "p4.png")
    assert cli_main([*common, "--vector", "smile=0.5"]) == 2
    assert "p4: input_sha256 was" in capsys.readouterr().err
    assert cli_main([*common, "--vector", "smile=0.5", "--overwrite"]) == 0
    assert "1 written (1 redone), 4 already done" in capsys.readouterr().out


def test_a_vector_with_the_same_name_but_other_content_counts_as_other_settings(tmp_path, tiny_bundle, capsys,
                                                                                  monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    photos, out, vector = _photos(tmp_path / "photos", 1), tmp_path / "out", tmp_path / "v.safetensors"
    shape = json.loads((tiny_bundle / "manifest.json").read_text())["latent_shape"]
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_vector(EditVector(delta=torch.randn(*shape) * 0.1, name="mine", bundle_id="tiny-test"), vector)
        code = cli_main(["apply", str(photos), str(out), "--bundle", str(tiny_bundle), "--device", "cpu",
                         "--embed-steps", "1", "--vector", str(vector)])
        assert code == (0 if seed == 0 else 2)
    assert "vectors was" in capsys.readouterr().err

