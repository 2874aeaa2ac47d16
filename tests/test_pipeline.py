"""The facade on a tiny random bundle: embed, render, learn_edit, apply, refine, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from editgan_core.bundle import Bundle, BundleError
from editgan_core.editing import EditObjective, EditTarget, EditWeights, edit_region, infer_edit_classes
from editgan_core.inversion import ReconstructionObjective
from editgan_core.optim import lr_at, optimise
from editgan_core.pipeline import EditGANPipeline, InputError, prepare_image
from editgan_core.utils import to_tensor
from editgan_core.vectors import EditVector


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    return EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)


def test_bundle_errors_are_clear(tmp_path, tiny_bundle):
    with pytest.raises(BundleError, match="no bundle"):
        Bundle.load(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BundleError, match="not an EditGAN bundle"):
        Bundle.load(tmp_path / "bad")
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="missing"):
        Bundle.load(broken).load_generator()
    assert Bundle.load(tiny_bundle).domain_module().__name__ == "editgan_core.domains.faces"
    manifest.pop("domain")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="no procedural domain"):
        Bundle.load(broken).domain_module()


def test_sample_render_and_shapes(pipe):
    latent = pipe.sample_latent(1)
    assert latent.shape == (1, *pipe.latent_shape)
    assert torch.equal(latent, pipe.sample_latent(1))
    out = pipe.render(latent)
    assert out.image.shape == (32, 32, 3) and out.image.dtype == np.uint8
    assert out.labels.shape == (32, 32) and out.labels.max() < len(pipe.bundle.classes)


def test_embed_improves_on_the_encoder(pipe):
    target = pipe.render(pipe.sample_latent(2, truncation=0.5)).image
    start = pipe.embed(target, steps=0)
    result = pipe.embed(target, steps=30)
    assert result.steps_done == 30 and result.latent.shape == (1, *pipe.latent_shape)
    assert result.psnr > start.psnr


def test_embed_uses_the_bundle_learning_rate(tiny_bundle_copy, monkeypatch):
    from editgan_core import pipeline as pipeline_mod
    from editgan_core.bundle import write_manifest

    root = tiny_bundle_copy
    seen = []
    real = pipeline_mod.optimise
    monkeypatch.setattr(pipeline_mod, "optimise", lambda init, obj, steps, lr, *a: seen.append(lr) or real(
        init, obj, steps, lr, *a))
    image = np.zeros((32, 32, 3), np.uint8)
    EditGANPipeline.from_pretrained(root, device="cpu", lpips=False).embed(image, steps=1)
    manifest = json.loads((root / "manifest.json").read_text())
    write_manifest(root, {**manifest, "embedding": {"lr": 0.25}})
    pipe = EditGANPipeline.from_pretrained(root, device="cpu", lpips=False)
    pipe.embed(image, steps=1)
    pipe.embed(image, steps=1, lr=0.05)
    assert seen == [0.1, 0.25, 0.05]
    write_manifest(root, {**manifest, "embedding": {"lr": "fast"}})
    with pytest.raises(BundleError, match="embedding lr"):
        EditGANPipeline.from_pretrained(root, device="cpu", lpips=False)


def test_embed_cancels(pipe):
    calls = []
    result = pipe.embed(pipe.render(pipe.sample_latent(3)).image, steps=50, callback=calls.append,
                        should_stop=lambda: len(calls) >= 4)
    assert result.stopped and result.steps_done == 4 and len(calls) == 4


def test_learn_edit_reaches_painted_labels(pipe):
    latent = pipe.sample_latent(4)
    labels = pipe.render(latent).labels.astype(np.int64)
    box = (slice(8, 16), slice(8, 20))
    # The tiny segmenter names dominant colours (classes 1-3): paint the one the box shows least.
    paint = min((1, 2, 3), key=lambda c: (labels[box] == c).sum())
    painted = labels.copy()
    painted[box] = paint
    # The random tiny encoder is a poor regulariser, so weigh it down (as for any weak encoder).
    result = pipe.learn_edit(latent, painted, steps=60, lr=0.1, weights=EditWeights(l2=10, encoder=0.1))
    assert result.delta.shape == pipe.latent_shape
    assert result.region[box].all() and result.class_ids  # painted pixels always lie in r
    assert result.metrics["loss_best"] < 0.8 * result.metrics["loss_start"]
    assert (result.render.labels[box] == paint).mean() > (labels[box] == paint).mean() + 0.15
    assert result.metrics["change_inside"] > result.metrics["change_outside"]


def test_learn_shared_edit_finds_one_vector_for_several_images(pipe):
    box = (slice(8, 16), slice(8, 20))
    latents, painted = [], []
    for seed in (6, 7):
        latent = pipe.sample_latent(seed)
        labels = pipe.render(latent).labels.astype(np.int64)
        target = labels.copy()
        target[box] = 2
        latents.append(latent)
        painted.append(target)
    result = pipe.learn_shared_edit(latents, painted, [2], steps=40, lr=0.1, weights=EditWeights(l2=10, encoder=0.1))
    assert result.delta.shape == pipe.latent_shape and result.steps_done == 40 and result.class_ids == [2]
    assert result.metrics["loss_best"] < 0.8 * result.metrics["loss_start"]
    for latent in latents:  # the one δ moves both images towards their target
        before, after = pipe.render(latent).labels, pipe.render(pipe.apply(latent, [(result.delta, 1.0)])).labels
        assert (after[box] == 2).mean() > (before[box] == 2).mean()
    with pytest.raises(InputError, match="identical"):
        pipe.learn_shared_edit(latents, [pipe.render(latents[0]).labels, painted[1]], [2], steps=1)
    with pytest.raises(InputError, match="one painted label map per latent"):
        pipe.learn_shared_edit(latents, painted[:1], [2], steps=1)


def assert_lazy_encoder_term(make, latent, encoder, every: int, weight: float) -> None:
    """``make(encoder, every)`` builds an objective (encoder None: without the term): the lazy term
    must report the true loss, give the gradient k times on its steps and none in between."""
    calls = []

    def counting_encoder(image):
        calls.append(1)
        return encoder(image)

    def loss_and_grad(objective):
        w = latent.clone().requires_grad_(True)
        loss, terms = objective(w)
        loss.backward()
        return loss.item(), w.grad, terms

    (lazy_loss, lazy_grad, terms), (plain_loss, plain_grad, _), (loss, grad, _) = (
        loss_and_grad(make(counting_encoder, every)), loss_and_grad(make(None, 1)), loss_and_grad(make(encoder, 1)))
    assert lazy_loss == pytest.approx(loss) and terms["encoder"] > 0  # the reported loss is the true one
    torch.testing.assert_close(lazy_grad - plain_grad, every * (grad - plain_grad), rtol=1e-4, atol=1e-6)
    lazy = make(counting_encoder, every)
    calls.clear()
    for _ in range(2 * every - 1):
        step_loss, step_grad, _ = loss_and_grad(lazy)
    assert len(calls) == 2  # calls 0 and k of 2k - 1
    torch.testing.assert_close(step_grad, plain_grad)  # the last call: no encoder gradient, its last value reported
    assert step_loss == pytest.approx(plain_loss + weight * terms["encoder"])


def test_lazy_encoder_regulariser_weighs_in_every_kth_step(pipe):
    latent = pipe.sample_latent(8)
    labels = pipe.render(latent).labels.astype(np.int64)
    painted = labels.copy()
    painted[8:16, 8:20] = 2
    region = edit_region(labels, painted, [2])
    target = EditTarget(torch.from_numpy(painted), torch.from_numpy(region), to_tensor(pipe.render(latent).image[None]))
    assert_lazy_encoder_term(
        lambda encoder, every: EditObjective(pipe.generator, pipe.segmenter, target, EditWeights(encoder_every=every),
                                             None, encoder, pipe.noise),
        latent, pipe.encoder, 4, EditWeights().encoder)


def test_lazy_encoder_regulariser_in_the_embedding(pipe):
    image = to_tensor(pipe.render(pipe.sample_latent(10)).image[None])
    assert_lazy_encoder_term(
        lambda encoder, every: ReconstructionObjective(pipe.generator, image, None, encoder, encoder_weight=0.5,
                                                       encoder_every=every, noise=pipe.noise),
        pipe.sample_latent(9), pipe.encoder, 3, 0.5)


def test_learn_edit_refuses_bad_labels(pipe):
    latent = pipe.sample_latent(5)
    labels = pipe.render(latent).labels
    with pytest.raises(InputError, match="identical"):
        pipe.learn_edit(latent, labels, steps=1)
    with pytest.raises(InputError, match="expected"):
        pipe.learn_edit(latent, labels[:8], steps=1)
    bad = labels.astype(np.int64)
    bad[0, 0] = 99
    with pytest.raises(InputError, match="class ids"):
        pipe.learn_edit(latent, bad, steps=1)
    with pytest.raises(InputError, match="NaN"):
        pipe.render(torch.full((1, *pipe.latent_shape), float("nan")))
    with pytest.raises(InputError, match="shape"):
        pipe.render(torch.zeros(1, 3, 3))


def test_apply_composes_and_checks_bundle(pipe):
    latent = pipe.sample_latent(6)
    delta = torch.randn(pipe.latent_shape)
    vec = EditVector(delta=delta, name="v", bundle_id=pipe.bundle.id, class_ids=[8])
    assert torch.allclose(pipe.apply(latent, [(vec, 1.0), (vec, -1.0)]), latent, atol=1e-6)
    assert torch.allclose(pipe.apply(latent, [(vec, 0.5)]), latent + 0.5 * delta)
    foreign = EditVector(delta=delta, name="car", bundle_id="car512", class_ids=[1])
    with pytest.raises(InputError, match="car512"):
        pipe.apply(latent, [(foreign, 1.0)])
    with pytest.raises(InputError):
        pipe.apply(latent, [(torch.zeros(3, 3), 1.0)])


def test_refine_starts_from_the_applied_vector(pipe):
    latent = pipe.sample_latent(7)
    vec = EditVector(delta=torch.randn(pipe.latent_shape) * 0.3, name="v", bundle_id=pipe.bundle.id, class_ids=[1])
    result = pipe.refine(latent, [(vec, 1.0)], steps=5)
    assert result.steps_done == 5 and result.class_ids == [1]
    assert result.latent.shape == (1, *pipe.latent_shape)


def test_edit_region_includes_classes_and_dilates():
    original = np.ones((16, 16), np.int64)  # skin
    original[2:4, 2:4] = 3  # eyebrow
    original[12:14, 2:4] = 8  # lips elsewhere
    edited = original.copy()
    edited[9:11, 9:11] = 8  # paint lips over skin
    assert infer_edit_classes(original, edited) == [8]  # skin is the container painted over
    groups = {"smile": [8, 9], "brows": [3]}
    assert infer_edit_classes(original, edited, groups) == [8, 9]
    region = edit_region(original, edited, dilate=1)
    assert region[10, 10] and region[9, 9] and region[11, 11]  # changed pixel, dilated
    assert region[12:14, 2:4].all() and not region[2, 2]  # the edited class everywhere, not the brows
    region = edit_region(original, edited, class_ids=[3, 8], dilate=0)
    assert region[2:4, 2:4].all() and region.sum() == 12


def test_prepare_image_handles_real_world_files(tmp_path):
    wide = Image.new("RGB", (300, 100), (255, 0, 0))
    wide.paste((0, 255, 0), (100, 0, 200, 100))  # green centre square
    out = prepare_image(wide, 32)
    assert out.shape == (32, 32, 3) and out[16, 16, 1] > 200 and out[16, 16, 0] < 50
    rotated = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    path = tmp_path / "r.jpg"
    rotated.save(path, exif=exif)
    assert prepare_image(path, 16).shape == (16, 16, 3)
    assert prepare_image(np.zeros((20, 20, 4), np.uint8), 8).shape == (8, 8, 3)
    assert prepare_image(np.zeros((20, 20), np.float32), 8).shape == (8, 8, 3)
    with pytest.raises(InputError, match="NaN"):
        prepare_image(np.full((4, 4, 3), np.nan, np.float32), 8)
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot read"):
        prepare_image(tmp_path / "junk.png", 8)


def test_prepare_image_refuses_huge_images(monkeypatch):
    monkeypatch.setattr("editgan_core.photos.limits.MAX_INPUT_PIXELS", 100)
    with pytest.raises(InputError, match="limit"):
        prepare_image(Image.new("RGB", (20, 20)), 8)


def test_optimise_keeps_best_and_schedules():
    target = torch.tensor([3.0, -2.0])
    seen = []
    result = optimise(torch.zeros(2), lambda v: ((v - target).square().sum(), {}), steps=200, lr=0.1,
                      callback=seen.append)
    assert torch.allclose(result.best, target, atol=0.05) and len(seen) == 200
    assert result.best_loss == min(h["loss"] for h in result.history) or result.best_step == 200
    assert lr_at(0, 100, 0.1, "rampcos") == 0.0 and lr_at(50, 100, 0.1, "rampcos") == pytest.approx(0.1)
    assert lr_at(99, 100, 0.1, "rampcos") < 0.01
    with pytest.raises(FloatingPointError):
        optimise(torch.zeros(1), lambda v: (v.sum() / 0.0 * 0.0, {}), steps=1, lr=0.1)


def test_batch_cli_resumes_and_skips_bad_files(tmp_path, tiny_bundle, capsys):
    from editgan_core.cli import main

    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (50, 40), (200, 150, 100)).save(src / "a.png")
    (src / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    args = ["apply", str(src), str(out), "--bundle", str(tiny_bundle), "--vector", "smile=0.5", "--embed-steps", "2",
            "--refine", "2"]
    assert main(args) == 1  # one input failed: a script must notice
    summary = capsys.readouterr()
    assert "1 written (0 redone), 0 already done, 1 failed" in summary.out
    assert "failed (1):" in summary.err and "broken.jpg" in summary.err
    assert (out / "a.png").is_file() and (out / "a.latent.safetensors").is_file()
    mtime = (out / "a.png").stat().st_mtime_ns
    assert main(args) == 1
    assert (out / "a.png").stat().st_mtime_ns == mtime  # finished outputs are skipped
    (src / "broken.jpg").unlink()
    assert main(args) == 0  # every input has its output
    assert "0 written (0 redone), 1 already done, 0 failed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args[:5], "--vector", "no_such_vector"])
