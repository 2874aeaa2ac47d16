"""The pixel segmenter: its network, its term in the edit objective, and its distillation into a bundle."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from editgan_core.bundle import Bundle, BundleError
from editgan_core.editing import EditObjective, EditTarget, EditWeights
from editgan_core.models.image_segmenter import ImageSegmenter, model_size


def test_image_segmenter_reads_any_size_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = ImageSegmenter(5, 16, channels=(8, 16)).eval()
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    assert model(image).shape == (2, 5, 16, 16)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 5, 32, 32)  # resized in and back out
    again = ImageSegmenter.load(model.save(tmp_path / "s.safetensors"))
    assert torch.allclose(again(image), model(image))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        model(torch.zeros(3, 16, 16))
    assert (model_size(64), model_size(1024)) == (64, 256)  # large generators are read at a bounded size
    with pytest.raises(ValueError, match="divisible"):
        ImageSegmenter(5, 18, channels=(8, 16, 32))


class RedIsPartOne(nn.Module):
    """A pixel reader that calls a pixel class 1 as far as its red channel is above 0."""

    def forward(self, image):
        return torch.cat([torch.zeros_like(image[:, :1]), 8 * image[:, :1]], 1)


def _objective(weights, image_segmenter):
    class Generator:  # the latent is the picture: (1, 12) -> (1, 3, 2, 2)
        def synthesis(self, latent, noise=None, return_features=False):
            return SimpleNamespace(image=latent.reshape(1, 3, 2, 2), features=None)

    def segmenter(_features, pixels):  # the feature branch is already satisfied: it cannot tell anything
        return torch.zeros(len(pixels), 2)

    region = torch.tensor([[[True, False], [False, False]]])
    target = EditTarget(torch.ones(1, 2, 2, dtype=torch.int64), region, torch.zeros(1, 3, 2, 2))
    return EditObjective(Generator(), segmenter, target, weights, noise=[], image_segmenter=image_segmenter)


def test_objective_asks_the_pixel_segmenter_for_the_painted_parts():
    objective = _objective(EditWeights(encoder=0.0, image_ce=2.0), RedIsPartOne())
    latent = torch.zeros(1, 12, requires_grad=True)
    loss, terms = objective(latent)
    assert terms["image_ce"] == pytest.approx(float(torch.log(torch.tensor(2.0))))
    loss.backward()
    grad = latent.grad.reshape(3, 2, 2)
    assert grad[0, 0, 0] < 0  # only the region's red pixel is pushed, towards what the pixels must show
    assert grad[0].flatten()[1:].abs().max() == 0 and grad[1:, 0, 0].abs().max() == 0
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0, 0, 0] = 1.0
    assert objective(red.reshape(1, 12))[1]["image_ce"] < 1e-3
    assert "image_ce" not in _objective(EditWeights(encoder=0.0, image_ce=0.0), RedIsPartOne())(latent)[1]
    assert "image_ce" not in _objective(EditWeights(encoder=0.0), None)(latent)[1]


def test_distilled_segmenter_is_installed_used_by_edits_and_checked_on_load(tiny_bundle_copy, monkeypatch, capsys,
                                                                           caplog):
    from editgan_core import pipeline as pipeline_module
    from editgan_core.pipeline import EditGANPipeline
    from editgan_core.train import image_segmenter as train

    argv = ["--bundle", str(tiny_bundle_copy), "--samples", "272", "--steps", "2", "--batch", "4", "--threads", "1"]
    assert train.main(argv) == 0
    assert "agreement with the segmentation branch" in capsys.readouterr().out
    bundle = Bundle.load(tiny_bundle_copy)
    entry = bundle.manifest["image_segmenter"]
    assert 0 <= entry["agreement_miou"] <= 1 and entry["samples"] == 272 and entry["steps"] == 2
    with pytest.raises(SystemExit):  # refuses to replace without --replace
        train.main(argv)
    with pytest.raises(SystemExit):  # the pool must leave samples to train on beside the held-out check
        train.main([*argv[:3], "100", *argv[4:], "--replace"])

    pipe = EditGANPipeline.from_pretrained(tiny_bundle_copy, device="cpu", lpips=False)
    assert isinstance(pipe.image_segmenter, ImageSegmenter)
    seen = []
    real = pipeline_module.EditObjective
    monkeypatch.setattr(pipeline_module, "EditObjective", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    latent = pipe.sample_latent(0)
    painted = pipe.render(latent).labels.astype("int64")
    painted[: painted.shape[0] // 4] = 2  # hair over the top quarter
    terms = []
    pipe.learn_edit(latent, painted, steps=1, callback=lambda info: terms.append(info.terms))
    assert seen[-1].image_segmenter is pipe.image_segmenter and "image_ce" in terms[-1]
    pipe.refine(latent, [(torch.full(pipe.latent_shape, 0.1), 1.0)], steps=1)
    assert seen[-1].image_segmenter is None  # refinement's default weights leave it out

    manifest = json.loads((tiny_bundle_copy / "manifest.json").read_text())
    manifest["image_segmenter"]["branch_sha256"] = "0" * 64  # as if the branch had been retrained since
    (tiny_bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="editgan_core.bundle"):
        Bundle.load(tiny_bundle_copy).load_image_segmenter()
    assert "earlier segmentation branch" in caplog.text
    ImageSegmenter(len(bundle.classes) + 1, bundle.resolution, channels=(8, 16)).save(
        tiny_bundle_copy / "image_segmenter.safetensors")
    (tiny_bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="train it again"):
        Bundle.load(tiny_bundle_copy).load_image_segmenter()
    assert train.main([*argv, "--replace"]) == 0  # what the message says to do works
    assert Bundle.load(tiny_bundle_copy).load_image_segmenter().num_classes == len(bundle.classes)
