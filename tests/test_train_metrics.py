"""metrics.jsonl: one line per log interval from train.gan, never a step twice after a resume."""

from __future__ import annotations

import json

from editgan_core.train import gan
from editgan_core.train.metrics import MetricsLog


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_gan_training_writes_one_line_per_interval(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["--domain", "faces", "--size", "32", "--preset", "tiny32", "--out", str(out), "--batch", "4",
            "--ckpt-every", "100", "--sample-every", "1000", "--threads", "1", "--log-every", "2"]
    gan.main([*args, "--kimg", "0.02"])  # 5 steps: lines after steps 2 and 4, and the rest at the end
    rows = lines(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 5] and [r["images_seen"] for r in rows] == [8, 16, 20]
    assert all({"d", "g", "real", "fake", "img_per_s", "kimg", "time"} <= r.keys() for r in rows)
    assert "r1" in rows[0] and all(r["img_per_s"] > 0 for r in rows)  # R1 ran at step 0, inside the first line
    gan.main([*args, "--kimg", "0.028"])  # resumes at step 5 (the final checkpoint) and appends
    assert [r["step"] for r in lines(out / "metrics.jsonl")] == [2, 4, 5, 6, 7]


def test_a_resume_drops_lines_written_after_its_checkpoint(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, every=1)
    for step in range(1, 6):
        log.add(step, step * 4, {"d": float(step)})
    assert [r["d"] for r in lines(path)] == [1.0, 2.0, 3.0, 4.0, 5.0]
    MetricsLog(path, every=1, resume_step=3, images_seen=12)  # the checkpoint was at step 3
    assert [r["step"] for r in lines(path)] == [1, 2, 3]
    MetricsLog(tmp_path / "other.jsonl", every=1, enabled=False).add(1, 4, {"d": 1.0})  # rank > 0 writes nothing
    assert not (tmp_path / "other.jsonl").exists()
