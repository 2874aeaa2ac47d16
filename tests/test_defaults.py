"""Runtime defaults: read from the bundle manifest over the core's values, checked on open, used by the pipeline."""

from __future__ import annotations

import json
import shutil

import pytest

import editgan_core.pipeline as pipeline_module
from editgan_core.bundle import Bundle, BundleError
from editgan_core.defaults import RuntimeDefaults
from editgan_core.pipeline import EditGANPipeline
from editgan_core.vectors import load_vector

OVERRIDES = {"embed_steps": 4, "edit_steps": 3, "edit_lr": 0.05, "refine_steps": 2}


def with_manifest(src, dest, **changes):
    shutil.copytree(src, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest.update(changes)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def test_missing_entry_and_missing_keys_take_the_core_values(tiny_bundle, tmp_path):
    assert Bundle.load(tiny_bundle).defaults == RuntimeDefaults()
    partial = with_manifest(tiny_bundle, tmp_path / "partial", defaults={"edit_steps": 50})
    assert Bundle.load(partial).defaults == RuntimeDefaults(edit_steps=50)


@pytest.mark.parametrize("entry, message", [
    ({"edit_step": 50}, "unknown defaults edit_step"),
    ({"edit_steps": 0}, "edit_steps must be a whole number in 1..10000"),
    ({"embed_steps": 2.5}, "embed_steps must be a whole number"),
    ({"refine_steps": True}, "refine_steps must be a whole number"),
    ({"edit_lr": 0}, r"edit_lr must be a number in \(0, 10\)"),
    ({"edit_lr": "fast"}, "edit_lr must be a number"),
    ([30, 10], "'defaults' must be an object"),
])
def test_bad_defaults_are_refused_when_the_bundle_opens(tiny_bundle, tmp_path, entry, message):
    bad = with_manifest(tiny_bundle, tmp_path / "bad", defaults=entry)
    with pytest.raises(BundleError, match=message):
        Bundle.load(bad)


def test_pipeline_methods_use_the_bundles_defaults(tiny_bundle, tmp_path, monkeypatch):
    own = with_manifest(tiny_bundle, tmp_path / "own", defaults=OVERRIDES)
    pipe = EditGANPipeline.from_pretrained(own, device="cpu", lpips=False)
    assert pipe.defaults == RuntimeDefaults(**OVERRIDES)
    rates = []
    original = pipeline_module.optimise_edit

    def recording(objective, latent, init_delta, steps, lr, *args, **kwargs):
        rates.append(lr)
        return original(objective, latent, init_delta, steps, lr, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "optimise_edit", recording)
    latent = pipe.sample_latent(0)
    before = pipe.render(latent)
    painted = before.labels.copy()
    painted[8:16, 8:16] = 2
    steps: dict[str, list] = {"embed": [], "edit": [], "refine": []}
    pipe.embed(before.image, callback=steps["embed"].append)
    pipe.learn_edit(latent, painted, callback=steps["edit"].append)
    vector = load_vector(sorted((tiny_bundle / "vectors").glob("*.safetensors"))[0])
    pipe.refine(latent, [(vector, 1.0)], callback=steps["refine"].append)
    assert {k: len(v) for k, v in steps.items()} == {"embed": 4, "edit": 3, "refine": 2}
    assert rates == [0.05, 0.05]
    assert pipe.learn_edit(latent, painted, steps=1, lr=0.5).steps_done == 1 and rates[-1] == 0.5  # callers win
