"""Pivotal tuning on a tiny random model: the photo gets closer, edits run on the tuned copy, cancel and bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from editgan_core.losses import image_psnr
from editgan_core.pipeline import EditGANPipeline, InputError
from editgan_core.pti import MAX_STEPS, PivotalTuner, TuningSettings, synthesis_state, tuned_copy
from editgan_core.vectors import load_vector


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    return EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)


@pytest.fixture(scope="module")
def photo(pipe):
    """A picture the tiny model cannot quite draw: a render, mirrored and brightened, embedded briefly."""
    render = pipe.render(pipe.sample_latent(4)).image
    image = np.clip(render[:, ::-1].astype(np.int16) + 30, 0, 255).astype(np.uint8)
    return image, pipe.embed(image, steps=5, report=False)


@pytest.fixture(scope="module")
def tuned(pipe, photo):
    image, embedded = photo
    result = pipe.pivotal_tune(image, embedded.latent, steps=25)
    return result, pipe.with_tuned(result.state)


def test_tuning_raises_the_psnr_of_the_photo(pipe, photo, tuned):
    image, embedded = photo
    result, tuned_pipe = tuned
    assert result.steps_done == 25 and not result.stopped and result.seconds > 0
    assert result.loss_end < result.loss_start
    after = image_psnr(tuned_pipe.render(embedded.latent).image, image)
    assert after > embedded.psnr + 1.0
    assert all(v.device.type == "cpu" for v in result.state.values())
    assert not any(k.startswith("style.") for k in result.state)  # the mapping network is not tuned


def test_the_original_model_is_untouched_and_shares_everything_but_the_generator(pipe, photo, tuned):
    _, embedded = photo
    _, tuned_pipe = tuned
    before = pipe.render(embedded.latent).image
    assert np.array_equal(pipe.render(embedded.latent).image, before)
    assert tuned_pipe.base is pipe and pipe.base is None
    assert tuned_pipe.segmenter is pipe.segmenter and tuned_pipe.encoder is pipe.encoder
    assert tuned_pipe.generator is not pipe.generator
    assert tuned_pipe.fidelity is pipe.fidelity  # the domain check stays the original model's
    state = tuned_pipe.tuned_state()
    assert state.keys() == tuned[0].state.keys() and pipe.tuned_state() is None
    weight = next(iter(state))
    assert state[weight].data_ptr() == tuned_pipe.generator.state_dict()[weight].data_ptr()  # no second copy
    with pytest.raises(InputError, match="already a tuned copy"):
        tuned_pipe.pivotal_tune(photo[0], embedded.latent, steps=1)


def test_vectors_and_edits_run_on_the_tuned_copy(pipe, photo, tuned):
    _, embedded = photo
    _, tuned_pipe = tuned
    vector = load_vector(next(pipe.bundle.vectors_dir.glob("*.safetensors")))
    applied = tuned_pipe.apply(embedded.latent, [(vector, 1.0)])
    assert torch.equal(applied, pipe.apply(embedded.latent, [(vector, 1.0)]))  # same vector, same latent offset
    on_tuned = tuned_pipe.render(applied)
    assert not np.array_equal(on_tuned.image, tuned_pipe.render(embedded.latent).image)
    assert not np.array_equal(on_tuned.image, pipe.render(applied).image)  # drawn by the tuned weights
    refined = tuned_pipe.refine(embedded.latent, [(vector, 1.0)], steps=2)
    assert refined.steps_done == 2 and refined.render.labels.shape == (pipe.resolution, pipe.resolution)
    assert np.array_equal(refined.render.image, tuned_pipe.render(refined.latent).image)


def test_cancel_stops_at_the_next_step(pipe, photo):
    image, embedded = photo
    seen = []
    result = pipe.pivotal_tune(image, embedded.latent, steps=50, callback=seen.append,
                               should_stop=lambda: len(seen) >= 3)
    assert result.stopped and result.steps_done == 3 and [s.step for s in seen] == [1, 2, 3]
    assert seen[0].variable.shape == (1, 3, pipe.resolution, pipe.resolution)  # the step's reconstruction


def test_bounds_and_foreign_weights_are_refused(pipe, other_tiny_bundle, photo):
    image, embedded = photo
    with pytest.raises(InputError, match=f"0..{MAX_STEPS}"):
        pipe.pivotal_tune(image, embedded.latent, steps=MAX_STEPS + 1)
    other = EditGANPipeline.from_pretrained(other_tiny_bundle, device="cpu", lpips=False)
    foreign = {k: v.clone() for k, v in synthesis_state(other.generator).items()}
    if all(foreign[k].shape == v.shape for k, v in synthesis_state(pipe.generator).items()):
        foreign.pop(next(iter(foreign)))  # same architecture: a missing tensor must still be refused
    with pytest.raises(InputError, match="do not fit"):
        pipe.with_tuned(foreign)


def test_locality_regulariser_keeps_other_latents_closer(pipe, photo):
    image, embedded = photo
    target = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    away = pipe.sample_latent(99)
    drift = {}
    for weight in (0.0, 1.0):
        tuner = PivotalTuner(pipe.generator, embedded.latent, target, pipe.noise, None,
                             TuningSettings(steps=20, lr=3e-3, locality_weight=weight))
        copy = tuned_copy(pipe.generator, tuner.run().state)
        with torch.no_grad():
            a = copy.synthesis(away, noise=pipe.noise).image
            b = pipe.generator.synthesis(away, noise=pipe.noise).image
        drift[weight] = (a - b).pow(2).mean().item()
    assert drift[1.0] < drift[0.0]
