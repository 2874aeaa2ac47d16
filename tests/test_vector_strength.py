"""A shared vector's default strength is the one whose edit redraws the paintings on their own pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from editgan_core.pipeline import EditGANPipeline
from editgan_core.vector_strength import STRENGTHS, calibrate_strength


def test_the_strength_that_drew_the_paintings_is_found(tiny_bundle) -> None:
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    torch.manual_seed(0)
    delta = 0.6 * torch.randn(pipe.latent_shape)
    latents = torch.cat([pipe.sample_latent(seed) for seed in range(3)])
    painted = [pipe.render(w + 2.0 * delta).labels for w in latents.split(1)]  # paintings made at strength 2
    changed = sorted({int(c) for w, p in zip(latents.split(1), painted, strict=True)
                      for c in np.unique(p[p != pipe.render(w).labels])})
    assert changed  # the paintings differ from the pictures' own segmentation
    strength, scores = calibrate_strength(pipe, latents, painted, changed, delta)
    assert strength == 2.0 and scores["2"] == 1.0
    assert set(scores) == {f"{s:g}" for s in STRENGTHS} and all(v < 1.0 for k, v in scores.items() if k != "2")
    weaker, _ = calibrate_strength(pipe, latents, painted, changed, delta, strengths=(0.5, 1.0))
    assert weaker == 1.0  # the grid's closest, when 2 is not offered
    with pytest.raises(ValueError, match="one painted label map per latent"):
        calibrate_strength(pipe, latents, painted[:2], changed, delta)
