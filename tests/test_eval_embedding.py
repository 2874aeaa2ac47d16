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


def test_psnr_at_a_common_size_compares_the_same_detail():
    """A one-pixel checkerboard error vanishes when both pictures are area-resized to half size."""
    from editgan_core.scoring import psnr_at

    rng = np.random.default_rng(0)
    image = rng.integers(40, 200, (64, 64, 3)).astype(np.uint8)
    checker = (np.indices((64, 64)).sum(0) % 2 * 2 - 1)[..., None] * 20
    noisy = (image.astype(int) + checker).astype(np.uint8)
    assert psnr_at(noisy, image, 64) < 23 and psnr_at(noisy, image, 32) > 45
    smooth = (image.astype(int) + 20).astype(np.uint8)  # a shift in tone stays at every size
    assert abs(psnr_at(smooth, image, 32) - psnr_at(smooth, image, 64)) < 0.1


def test_cli_reports_the_psnr_at_a_common_size(tiny_bundle, capsys):
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    report = evaluate_embedding(pipe, faces, range(1), [0], progress=False, compare_size=pipe.resolution)
    assert report[0]["psnr_at"] == pytest.approx(report[0]["psnr"])  # at its own size: the plain PSNR
    main(["--bundle", str(tiny_bundle), "--n", "1", "--steps", "0", "--compare-size", "16"])
    out = capsys.readouterr().out
    assert "PSNR@16px" in out and len(out.splitlines()[2].split()) == 5
