"""Smoke tests on the shipped demo bundle: complete, consistent with the code, and it edits.

The other tests use tiny random models; these catch a bundle left half-rebuilt (a preset dropped from
``train.presets`` but its vector still shipped, an encoder from another run) before a user does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from editgan_core.editing import edit_region
from editgan_core.eval.edit import read_attribute
from editgan_core.eval.kid import DEFAULT_ATTRIBUTE_NET
from editgan_core.models.attribute_net import AttributeNet
from editgan_core.pipeline import EditGANPipeline
from editgan_core.train.presets import PRESETS
from editgan_core.vectors import VectorLibrary

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "faces64"
SEEDS = range(6)  # held-out benchmark faces
pytestmark = pytest.mark.slow  # loads and embeds with the shipped bundle


@pytest.fixture(scope="module")
def demo() -> EditGANPipeline:
    return EditGANPipeline.from_pretrained(DEMO, device="cpu", lpips=False)


@pytest.fixture(scope="module")
def library(demo) -> VectorLibrary:
    return VectorLibrary(Path("/nonexistent"), demo.bundle.id, demo.latent_shape,
                         read_only_roots=[demo.bundle.vectors_dir])


@pytest.fixture(scope="module")
def embedded(demo):
    """(render, 20-step embedding) of each held-out face."""
    domain = demo.bundle.domain_module()
    faces = [domain.render_face(s, demo.resolution) for s in SEEDS]
    return [(face, demo.embed(face.image, steps=20)) for face in faces]


def test_bundle_is_complete(demo):
    assert demo.can_segment and demo.encoder is not None
    assert demo.resolution == 64
    assert len(demo.bundle.classes) == len(demo.bundle.palette) == 13


def test_presets_are_exactly_the_scripted_ones(demo, library):
    vectors = library.list()
    scripted = [v for v in vectors if v.source != "judge direction"]
    assert sorted(v.name for v in scripted) == sorted(s.name for s in PRESETS)
    judged = [v for v in vectors if v.source == "judge direction"]  # InterFaceGAN baselines (eval.interfacegan)
    assert sorted(v.name for v in judged) == sorted(f"judge_{s.name}" for s in PRESETS)
    for v in vectors:
        assert v.bundle_id == demo.bundle.id and v.latent_shape == demo.latent_shape
        assert library.is_preset(v.name)


def test_encoder_and_segmenter_read_held_out_faces(demo, embedded):
    for face, result in embedded:
        assert demo.embed(face.image, steps=0).psnr > 22.0  # 25-27 dB measured
        assert result.psnr > 24.0
        assert (result.render.labels == face.labels).mean() > 0.9  # 0.96 measured


def test_smile_preset_smiles_inside_its_region(demo, library, embedded):
    judge = AttributeNet.load(DEFAULT_ATTRIBUTE_NET).eval()
    smile = library.get("smile")
    rises = []
    for _, result in embedded:
        before = result.render  # the embedding's own render, labels included
        after = demo.render(demo.apply(result.latent, [(smile, smile.default_scale)]))  # as the studio applies it
        rises.append(read_attribute(judge, after.image, "smile") - read_attribute(judge, before.image, "smile"))
        region = edit_region(before.labels, after.labels, smile.class_ids)
        change = np.abs(after.image.astype(np.float32) - before.image.astype(np.float32)).mean(2)
        assert change[region].mean() > 1.5 * change[~region].mean()
    # A shared vector does not smile on every face: on the 100 strict held-out faces the shipped one lowers the
    # judge's smile reading on 2 (docs/results.md). Here it rises on all six, by 0.03-0.24.
    assert all(r > 0 for r in rises) and np.mean(rises) > 0.05, rises
