"""The fidelity report: calibration arithmetic, the report after an embedding, caching, the calibrate command,
and the demo bundle flagging a real photograph but not its own renders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from editgan_core import fidelity
from editgan_core.cli import main as cli_main
from editgan_core.eval.fidelity import changes, roc_auc
from editgan_core.fidelity import FidelityChecker, calibration_from_features
from editgan_core.pipeline import EditGANPipeline
from editgan_core.utils import tensor_to_uint8

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "faces64"


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    return EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)


def test_calibration_puts_features_in_robust_z_units_and_thresholds_at_a_high_quantile():
    rng = np.random.default_rng(0)
    values = np.stack([rng.normal(-4, 0.5, 400), rng.normal(2, 3, 400)], 1)
    calib = calibration_from_features(values, ["recon", "critic"], "k", quantile=0.99)
    assert np.allclose(calib.median, [-4, 2], atol=0.2) and np.allclose(calib.scale, [0.5, 3], rtol=0.15)
    distances = calib.distance(values)
    assert np.mean(distances > calib.threshold) == pytest.approx(0.01, abs=0.005)
    far = calib.distance(np.array([[-4 + 10 * 0.5, 2 + 10 * 3]]))[0]
    assert far == pytest.approx(10, rel=0.2) and calib.typicality(far) == pytest.approx(1 / 401)
    assert calib.typicality(-1e9) == 1.0


def test_roc_auc_counts_ties_half():
    assert roc_auc([0, 1], [2, 3]) == 1.0 and roc_auc([2, 3], [0, 1]) == 0.0 and roc_auc([1], [1]) == 0.5


def test_every_embedding_carries_a_report_and_the_calibration_is_cached(tiny_bundle, editgan_home, monkeypatch):
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    target = pipe.render(pipe.sample_latent(3)).image
    result = pipe.embed(target, steps=3)
    report = result.fidelity
    assert report is not None and report.psnr == pytest.approx(result.psnr)
    assert report.lpips is None and set(report.features) == set(pipe.fidelity.probe.names)
    assert pipe.fidelity.probe.names[0] == "recon"
    assert 0 < report.typicality <= 1 and report.out_of_domain == (report.distance > report.threshold)
    assert report.as_dict()["verdict"] == report.verdict and "PSNR" in report.summary()
    assert pipe.encoder_embed(target).fidelity.distance == pytest.approx(report.distance)
    assert pipe.embed(target, steps=1, report=False).fidelity is None
    cached = list((editgan_home / "fidelity").glob("*.json"))
    assert len(cached) == 1

    # a second process reads the cache instead of rendering the calibration set again
    again = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    monkeypatch.setattr(fidelity.DomainProbe, "calibrate", lambda *a, **k: pytest.fail("recalibrated"))
    assert again.fidelity.calibration().threshold == pytest.approx(pipe.fidelity.calibration().threshold)


def test_a_changed_generator_file_invalidates_the_calibration(tiny_bundle_copy):
    pipe = EditGANPipeline.from_pretrained(tiny_bundle_copy, device="cpu", lpips=False)
    key = pipe.fidelity.key
    (tiny_bundle_copy / "generator.safetensors").write_bytes((tiny_bundle_copy / "generator.safetensors").read_bytes()
                                                             + b" ")
    assert FidelityChecker(pipe, None).key != key


def test_calibrate_command_stores_it_in_the_manifest(tiny_bundle_copy, editgan_home, monkeypatch):
    assert cli_main(["bundle", "calibrate", "--bundle", str(tiny_bundle_copy), "--device", "cpu"]) == 0
    stored = json.loads((tiny_bundle_copy / "manifest.json").read_text())["fidelity"]
    assert len(stored["distances"]) == fidelity.CALIBRATION_SAMPLES
    for cached in (editgan_home / "fidelity").glob("*.json"):
        cached.unlink()
    monkeypatch.setattr(fidelity.DomainProbe, "calibrate", lambda *a, **k: pytest.fail("recalibrated"))
    pipe = EditGANPipeline.from_pretrained(tiny_bundle_copy, device="cpu", lpips=False)
    assert stored["features"] == pipe.fidelity.probe.names
    assert pipe.fidelity.calibration().threshold == pytest.approx(stored["threshold"])


def test_without_encoder_the_probe_optimises_and_reads_the_latent_distance(tiny_bundle):
    full = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    pipe = EditGANPipeline(full.bundle, full.generator, full.segmenter, None, None, torch.device("cpu"), full.w_avg)
    checker = FidelityChecker(pipe, None)
    assert checker.probe.names == ["recon", "latent"]
    images = checker.probe.render_images(range(4))
    values = checker.probe.features(images)
    assert values.shape == (4, 2) and np.isfinite(values).all()
    w = pipe.latent_from_z(torch.randn(64, pipe.generator.style_dim), truncation=1.0)
    far = w * 6  # rows far outside W
    assert checker.probe.latent_distance(far).mean() > 2 * checker.probe.latent_distance(w).mean()


def test_out_of_domain_changes_raise_the_distance_on_a_tiny_model(pipe):
    checker = pipe.fidelity
    renders = tensor_to_uint8(checker.probe.render_images(range(900, 908)))
    noisy = np.stack([changes([])[5][1](x, np.random.default_rng(i)) for i, x in enumerate(renders)])  # noise
    assert checker.distances(torch.from_numpy(noisy).permute(0, 3, 1, 2).float() / 127.5 - 1).mean() > \
        checker.distances(torch.from_numpy(renders).permute(0, 3, 1, 2).float() / 127.5 - 1).mean()


# -- the demo bundle (its calibration ships in the manifest) ---------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    if not (DEMO / "manifest.json").is_file():
        pytest.skip("the demo bundle is not here")
    return EditGANPipeline.from_pretrained(DEMO, device="cpu", lpips=False)


def test_demo_flags_a_real_photograph(demo):
    data = pytest.importorskip("skimage.data")
    report = demo.encoder_embed(data.astronaut()).fidelity
    assert report.out_of_domain and "outside what this model can draw" in report.verdict


def test_demo_does_not_flag_its_own_renders(demo):
    for seed in (0, 1, 2, 3):
        render = demo.render(demo.sample_latent(seed), with_labels=False).image
        report = demo.encoder_embed(render).fidelity
        assert not report.out_of_domain, (seed, report.summary())
