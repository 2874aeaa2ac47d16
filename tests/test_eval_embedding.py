"""The embedding benchmark on a tiny bundle: one row per step count, figures that make sense."""

from __future__ import annotations

import math

import numpy as np
import pytest

from editgan_core.domains import faces
from editgan_core.eval.embedding import evaluate_range, main
from editgan_core.pipeline import EditGANPipeline
from editgan_core.scoring import evaluate_embedding, shifted_miou


def test_more_steps_reconstruct_better(tiny_bundle):
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    report = evaluate_embedding(pipe, faces, range(2), [0, 20], progress=False)
    assert list(report) == [0, 20]
    assert report[20]["psnr"] > report[0]["psnr"] and report[20]["seconds"] > report[0]["seconds"]
    for row in report.values():
        assert 0 <= row["miou"] <= 1 and set(row["per_class"]) == {c.name for c in pipe.bundle.classes}
        assert all(math.isnan(v) or 0 <= v <= 1 for v in row["per_class"].values())


def test_cli_prints_a_table(tiny_bundle, capsys):
    main(["--bundle", str(tiny_bundle), "--n", "1", "--steps", "0", "2"])
    out = capsys.readouterr().out
    assert "PSNR dB" in out and "per-class IoU at 2 steps" in out and "moved by one pixel" in out
    assert [line.split()[0] for line in out.splitlines()[2:4]] == ["0", "2"]


def test_range_check_recovers_generator_samples(tiny_bundle, capsys):
    """A face the generator drew itself comes back far better than the encoder alone gets it."""
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    coarse = evaluate_range(pipe, range(10**6, 10**6 + 2), 0, progress=False)
    fine = evaluate_range(pipe, range(10**6, 10**6 + 2), 40, progress=False)
    assert fine["psnr"] > coarse["psnr"] + 3 and 0 <= fine["miou"] <= 1
    main(["--bundle", str(tiny_bundle), "--n", "1", "--steps", "3", "--range-check", "1"])
    assert "range check, 1 generator samples embedded with 3 steps" in capsys.readouterr().out


def test_one_pixel_shift_yardstick():
    flat = np.zeros((8, 8), np.int64)
    assert shifted_miou([flat], 2)[0] == 1.0  # nothing to misplace; class 1 absent -> NaN, ignored
    block = flat.copy()
    block[2:4, 2:4] = 1  # a 2x2 part moved by one pixel keeps half of itself: IoU 2/6
    miou, ious = shifted_miou([block], 2)
    assert ious[1] == pytest.approx(2 / 6) and 0 < miou < 1
    face = faces.render_face(0, 64).labels
    assert 0.3 < shifted_miou([face], len(faces.CLASSES))[0] < 0.8
