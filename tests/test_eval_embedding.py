"""The embedding benchmark on a tiny bundle: one row per step count, figures that make sense."""

from __future__ import annotations

import math

import pytest

from editgan_core.domains import faces
from editgan_core.eval.embedding import evaluate_embedding, main
from editgan_core.pipeline import EditGANPipeline
from editgan_core.testing import make_tiny_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


def test_more_steps_reconstruct_better(bundle_dir):
    pipe = EditGANPipeline.from_pretrained(bundle_dir, device="cpu", lpips=False)
    report = evaluate_embedding(pipe, faces, range(2), [0, 20], progress=False)
    assert list(report) == [0, 20]
    assert report[20]["psnr"] > report[0]["psnr"] and report[20]["seconds"] > report[0]["seconds"]
    for row in report.values():
        assert 0 <= row["miou"] <= 1 and set(row["per_class"]) == {c.name for c in pipe.bundle.classes}
        assert all(math.isnan(v) or 0 <= v <= 1 for v in row["per_class"].values())


def test_cli_prints_a_table(bundle_dir, capsys):
    main(["--bundle", str(bundle_dir), "--n", "1", "--steps", "0", "2"])
    out = capsys.readouterr().out
    assert "PSNR dB" in out and "per-class IoU at 2 steps" in out
    assert [line.split()[0] for line in out.splitlines()[2:4]] == ["0", "2"]
