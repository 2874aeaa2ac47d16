"""Tiny random-weight bundles for tests and UI development (fast on any CPU, no training)."""

from __future__ import annotations

from pathlib import Path

import torch

from editgan_core.bundle import write_manifest
from editgan_core.models.encoder import Encoder
from editgan_core.models.segmenter import PixelEnsemble
from editgan_core.models.stylegan2 import Generator
from editgan_core.train.pixel_ensemble import train_ensemble
from editgan_core.vectors import EditVector, save_vector

TINY_PRESETS = {"smile": (8, 9), "look_left": (5, 6)}


def colour_segmenter(generator: Generator, num_classes: int, images: int = 8) -> PixelEnsemble:
    """A segmenter trained to name each pixel's dominant colour (classes 1-3, dark = 0).

    A random segmenter ignores the latent; one tied to the picture lets tests check that edits
    really move labels and pixels.
    """
    with torch.no_grad():
        latents = generator.w_to_wplus(generator.style(torch.randn(images, generator.style_dim)))
        out = generator.synthesis(latents, noise=generator.stored_noise(), return_features=True)
    labels = out.image.argmax(1) + 1
    labels[out.image.mean(1) < -0.3] = 0
    features = [[f[i: i + 1] for f in out.features] for i in range(images)]
    return train_ensemble(features, list(labels), num_classes, generator.feature_channels(), members=2, steps=80,
                          pixels_per_step=512, hidden=(16, 8))


def tiny_generator_config(size: int = 32) -> dict:
    """The JSON generator config of the tiny test models (fast on any CPU)."""
    channels = {k: v for k, v in {4: 32, 8: 32, 16: 16, 32: 16, 64: 8}.items() if k <= size}
    return {"size": size, "style_dim": 32, "n_mlp": 2, "channels": {str(k): v for k, v in channels.items()}}


def make_tiny_bundle(root: Path, size: int = 32, seed: int = 0, bundle_id: str = "tiny-test") -> Path:
    """Write a random bundle with the faces classes, a segmenter, an encoder and two preset vectors."""
    return make_random_bundle(root, tiny_generator_config(size), seed, bundle_id)


def make_random_bundle(root: Path, config: dict, seed: int = 0, bundle_id: str = "random-test",
                       fit_segmenter: bool = True) -> Path:
    """A random-weight bundle for any generator ``config`` (e.g. config-f 1024 px for GPU benchmarks).

    ``fit_segmenter`` trains the colour segmenter (needs syntheses on the CPU, so small models only);
    without it the pixel ensemble keeps its random weights, which costs the same to run.
    """
    from editgan_core.domains import faces

    torch.manual_seed(seed)
    generator = Generator.from_config(config).eval()
    size = generator.size
    root.mkdir(parents=True, exist_ok=True)
    generator.save(root / "generator.safetensors")
    if fit_segmenter:
        segmenter = colour_segmenter(generator, len(faces.CLASSES))
    else:
        segmenter = PixelEnsemble(generator.feature_channels(), len(faces.CLASSES)).eval()
    segmenter.save(root / "segmenter.safetensors")
    encoder = Encoder(min(size, 256), generator.n_latent, generator.style_dim)
    encoder.set_w_avg(generator.mean_latent(256)[0])
    encoder.save(root / "encoder.safetensors")
    for name, classes in TINY_PRESETS.items():
        delta = torch.randn(generator.n_latent, generator.style_dim) * 0.5
        save_vector(EditVector(delta=delta, name=name, bundle_id=bundle_id, class_ids=list(classes), source="preset"),
                    root / "vectors" / f"{name}.safetensors")
    write_manifest(root, {
        "id": bundle_id, "title": "Tiny random test model", "domain": "faces", "resolution": size,
        "latent_shape": [generator.n_latent, generator.style_dim],
        "generator": {"file": "generator.safetensors"}, "segmenter": {"file": "segmenter.safetensors"},
        "encoder": {"file": "encoder.safetensors"},
        "classes": [{"id": c.id, "name": c.name, "color": list(c.color)} for c in faces.CLASSES],
        "edit_groups": {k: list(v) for k, v in faces.EDIT_CLASSES.items()}, "vectors_dir": "vectors",
    })
    return root
