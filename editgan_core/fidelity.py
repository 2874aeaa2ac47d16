"""An honest fidelity report for an embedded photo: how close the model's version is, and whether the photo
is something this model can draw at all (out-of-domain detection).

A reconstruction of 20 dB can mean "a hard photo of a face" or "not a face"; the user needs to know which,
because edits follow the model's version of the photo. So the report holds the embedding's own PSNR (and
LPIPS when its weights are present) and a *domain distance* measured by a fixed probe that does not
depend on how long the user let the embedding run:

- ``recon``: log MSE between the photo and the generator's render of the encoder's latent (with no
  encoder: of a short optimisation from the average latent, which drifts away from W on foreign photos,
  so there the latent's Mahalanobis distance from the mapping network's W samples, ``latent``, is kept
  too). A model reconstructs its own pictures from one encoder pass; a photo it cannot draw comes back
  as something else.
- ``lpips``: the same comparison perceptually, when LPIPS weights are present.
- ``critic``: minus the bundle's discriminator score, when the bundle ships its discriminator.

Each feature is put in robust z units (median and MAD over the model's own renders); the distance is
their mean, and the threshold a high quantile of the distances of renders. Calibration runs once per
bundle (``python -m editgan_core bundle calibrate`` stores it in the manifest) and is otherwise cached
under ``<EDITGAN_HOME>/fidelity``, keyed by the component files it depends on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from editgan_core.bundle import Bundle, BundleError, write_manifest
from editgan_core.losses import image_psnr
from editgan_core.models.serialization import CheckpointError
from editgan_core.optim import optimise
from editgan_core.paths import cache_dir
from editgan_core.utils import file_sha256, to_tensor

log = logging.getLogger(__name__)

FEATURES_VERSION = 1  # bump when a feature's definition changes: old calibrations are then recomputed
CALIBRATION_SAMPLES = 128
CALIBRATION_SEED = 7_777_777  # latent seeds of calibration renders, away from users' seeds and the benches'
THRESHOLD_QUANTILE = 0.995  # flag a photo further out than this share of the model's own renders
PROBE_STEPS = 30  # optimisation steps of the probe when a bundle has no encoder
W_SAMPLES = 10_000  # mapping-network samples behind the W statistics
BATCH = 16
MANIFEST_KEY = "fidelity"


@dataclass
class FidelityReport:
    """What the page and the API say after an embedding (plain numbers: it crosses ZeroGPU's pickle)."""

    psnr: float  # the embedding's reconstruction, dB
    lpips: float | None  # the same, perceptual (None without LPIPS weights)
    distance: float  # domain distance of the photo, robust z units
    threshold: float  # distances above it are out of domain
    typicality: float  # share of the model's own renders at least as far out (0..1)
    out_of_domain: bool
    features: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.out_of_domain:
            return ("This photo is outside what this model can draw: it lies further from the model's own pictures "
                    "than any but a few of them. Edits will follow the model's version of it (its reconstruction), "
                    "not the photo.")
        return "Within what this model draws: edits should carry over to this photo."

    def summary(self) -> str:
        lp = f", LPIPS {self.lpips:.3f}" if self.lpips is not None else ""
        return (f"PSNR {self.psnr:.1f} dB{lp}; domain distance {self.distance:.1f} "
                f"(threshold {self.threshold:.1f}, as typical as {100 * self.typicality:.0f}% of the model's renders)")

    def as_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


@dataclass
class Calibration:
    """Robust location and scale of each feature over the model's renders, and the renders' distances."""

    key: str
    features: list[str]
    median: list[float]
    scale: list[float]
    distances: list[float]  # sorted
    threshold: float

    def distance(self, values: np.ndarray) -> np.ndarray:
        """(N, F) feature values -> (N,) mean robust z."""
        z = (np.asarray(values, dtype=np.float64) - np.asarray(self.median)) / np.asarray(self.scale)
        return z.mean(axis=1)

    def typicality(self, distance: float) -> float:
        """Share of calibration renders at least ``distance`` out (with the photo itself counted in)."""
        beyond = len(self.distances) - int(np.searchsorted(self.distances, distance, side="left"))
        return (beyond + 1) / (len(self.distances) + 1)


def calibration_from_features(values: np.ndarray, names: Sequence[str], key: str,
                              quantile: float = THRESHOLD_QUANTILE) -> Calibration:
    values = np.asarray(values, dtype=np.float64)
    median = np.median(values, axis=0)
    mad = 1.4826 * np.median(np.abs(values - median), axis=0)
    scale = np.maximum(mad, 1e-6 + 1e-3 * np.abs(median))  # a constant feature must not divide by zero
    calib = Calibration(key, list(names), median.tolist(), scale.tolist(), [], 0.0)
    distances = np.sort(calib.distance(values))
    calib.distances = distances.tolist()
    calib.threshold = float(np.quantile(distances, quantile))
    return calib


class DomainProbe:
    """Computes the domain features of photos with one pipeline's models (see the module docstring)."""

    def __init__(self, pipe, discriminator=None) -> None:
        self.pipe = pipe
        self.discriminator = discriminator.to(pipe.device) if discriminator is not None else None
        self._w_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def names(self) -> list[str]:
        names = ["recon"]
        if self.pipe.encoder is None:
            names.append("latent")
        if self.pipe.lpips is not None:
            names.append("lpips")
        if self.discriminator is not None:
            names.append("critic")
        return names

    def w_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and precision matrix of w over mapping-network samples (a fixed seed: reproducible)."""
        if self._w_stats is None:
            gen = self.pipe.generator
            rng = torch.Generator().manual_seed(CALIBRATION_SEED - 1)
            with torch.no_grad():
                w = gen.style(torch.randn(W_SAMPLES, gen.style_dim, generator=rng).to(self.pipe.device)).double()
            cov = torch.cov(w.T) + 1e-6 * torch.eye(w.shape[1], dtype=w.dtype, device=w.device)
            self._w_stats = (w.mean(0).float(), torch.linalg.inv(cov).float())
        return self._w_stats

    def latent_distance(self, latent: torch.Tensor) -> torch.Tensor:
        """Mean Mahalanobis distance of a W+ latent's rows from the W distribution, (B,)."""
        mean, precision = self.w_stats()
        d = latent.to(mean.device) - mean
        return torch.einsum("bld,de,ble->bl", d, precision, d).clamp_min(0).sqrt().mean(1)

    def probe_latent(self, images: torch.Tensor) -> torch.Tensor:
        pipe = self.pipe
        if pipe.encoder is not None:
            with torch.no_grad():
                return pipe.encoder(images)
        from editgan_core.inversion import ReconstructionObjective  # the embedding's objective, L2 only

        objective = ReconstructionObjective(pipe.generator, images, None, None, noise=pipe.noise)
        init = pipe.generator.w_to_wplus(pipe.w_avg).expand(len(images), -1, -1)
        return optimise(init, objective, PROBE_STEPS, pipe.bundle.embed_lr, "rampcos").best.detach()

    def features(self, images: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) in [-1, 1] -> (N, F) feature values, in ``names`` order."""
        rows = []
        for batch in images.split(BATCH):
            batch = batch.to(self.pipe.device)
            latent = self.probe_latent(batch)
            with torch.no_grad():
                recon = self.pipe.generator.synthesis(latent, noise=self.pipe.noise).image
                cols = [torch.log((recon - batch).pow(2).flatten(1).mean(1).clamp_min(1e-8))]
                if self.pipe.encoder is None:
                    cols.append(self.latent_distance(latent))
                if self.pipe.lpips is not None:
                    cols.append(self.pipe.lpips(recon, batch))
                if self.discriminator is not None:  # one at a time: the minibatch-stddev layer mixes a batch
                    cols.append(-torch.cat([self.discriminator(x[None]) for x in batch]).reshape(-1))
            rows.append(torch.stack([c.float().cpu() for c in cols], 1))
        return torch.cat(rows).numpy()

    def render_images(self, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
        """Renders of the model (seeded z through the mapping network), (N, 3, H, W) in [-1, 1]."""
        gen, out = self.pipe.generator, []
        for chunk in np.array_split(np.asarray(seeds), max(1, int(np.ceil(len(seeds) / BATCH)))):
            z = torch.stack([torch.randn(gen.style_dim, generator=torch.Generator().manual_seed(int(s)))
                             for s in chunk])
            latent = self.pipe.latent_from_z(z, truncation).to(self.pipe.device)
            with torch.no_grad():
                out.append(gen.synthesis(latent, noise=self.pipe.noise).image.clamp(-1, 1).cpu())
        return torch.cat(out)

    def calibrate(self, n: int = CALIBRATION_SAMPLES, key: str = "") -> Calibration:
        seeds = range(CALIBRATION_SEED, CALIBRATION_SEED + n)
        return calibration_from_features(self.features(self.render_images(seeds)), self.names, key)


def calibration_key(bundle: Bundle, names: Sequence[str], n: int = CALIBRATION_SAMPLES) -> str:
    """Changes whenever a calibration would: the features, their version, and the files they read."""
    parts = [str(FEATURES_VERSION), str(n), ",".join(names)]
    for component in ("generator", "encoder", "discriminator"):
        entry = bundle.manifest.get(component)
        if entry and (bundle.root / entry["file"]).is_file():
            parts.append(f"{component}:{file_sha256(bundle.root / entry['file'])}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def load_discriminator(bundle: Bundle, generator):
    """The bundle's discriminator in eval mode, or None (absent or unreadable: the critic feature is skipped)."""
    if not bundle.has("discriminator"):
        return None
    from editgan_core.bundle_build import read_discriminator

    try:
        return read_discriminator(bundle.root / bundle.manifest["discriminator"]["file"], generator).eval()
    except (BundleError, CheckpointError, OSError, KeyError, TypeError) as exc:
        log.warning("model '%s': discriminator not usable for the fidelity report (%s)", bundle.id, exc)
        return None


def _calibration_from_json(data: object, key: str) -> Calibration | None:
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    try:
        return Calibration(**data)
    except TypeError:
        return None


class FidelityChecker:
    """One pipeline's probe and calibration: ``report`` after each embedding."""

    def __init__(self, pipe, discriminator=None) -> None:
        self.probe = DomainProbe(pipe, discriminator)
        self._calibration: Calibration | None = None

    @classmethod
    def for_pipeline(cls, pipe) -> FidelityChecker:
        return cls(pipe, load_discriminator(pipe.bundle, pipe.generator))

    @property
    def cache_file(self) -> Path:
        return cache_dir("fidelity") / f"{self.probe.pipe.bundle.id}-{self.key}.json"

    @cached_property
    def key(self) -> str:
        """Hashes the component files: computed once per checker."""
        return calibration_key(self.probe.pipe.bundle, self.probe.names)

    def calibration(self) -> Calibration:
        """The manifest's calibration, else the cached one, else computed now (and cached)."""
        if self._calibration is None:
            key = self.key
            calib = _calibration_from_json(self.probe.pipe.bundle.manifest.get(MANIFEST_KEY), key)
            if calib is None and self.cache_file.is_file():
                try:
                    calib = _calibration_from_json(json.loads(self.cache_file.read_text()), key)
                except (OSError, json.JSONDecodeError):
                    calib = None
            if calib is None:
                log.info("calibrating the fidelity report of '%s' on %d renders", self.probe.pipe.bundle.id,
                         CALIBRATION_SAMPLES)
                calib = self.probe.calibrate(key=key)
                try:
                    self.cache_file.parent.mkdir(parents=True, exist_ok=True)
                    self.cache_file.write_text(json.dumps(asdict(calib)))
                except OSError as exc:
                    log.warning("cannot cache the fidelity calibration: %s", exc)
            self._calibration = calib
        return self._calibration

    def distances(self, images: torch.Tensor) -> np.ndarray:
        """Domain distances of (N, 3, H, W) images in [-1, 1]."""
        return self.calibration().distance(self.probe.features(images))

    def report(self, pixels: np.ndarray, render: np.ndarray) -> FidelityReport:
        """The report of one photo (uint8 crop at the model's size) and the embedding's render of it."""
        calib = self.calibration()
        target, recon = to_tensor(pixels[None]), to_tensor(render[None])
        values = self.probe.features(target)
        distance = float(calib.distance(values)[0])
        lp = None
        if self.probe.pipe.lpips is not None:
            with torch.no_grad():
                lp = float(self.probe.pipe.lpips(recon.to(self.probe.pipe.device), target.to(self.probe.pipe.device)))
        return FidelityReport(image_psnr(render, pixels), lp, distance, calib.threshold, calib.typicality(distance),
                              distance > calib.threshold, dict(zip(calib.features, values[0].tolist(), strict=True)))


def calibrate_bundle(path: str | Path, device: str | None = None) -> str:
    """Calibrate a bundle's report now and store it in its manifest (``bundle calibrate``), so that no
    first embedding pays for it and read-only copies (a Hub download) need no cache."""
    from editgan_core.pipeline import EditGANPipeline

    pipe = EditGANPipeline.from_pretrained(path, device=device)
    calib = FidelityChecker.for_pipeline(pipe).calibration()
    write_manifest(pipe.bundle.root, {**pipe.bundle.manifest, MANIFEST_KEY: asdict(calib)})
    return (f"{pipe.bundle.id}: fidelity report calibrated on {len(calib.distances)} renders (features "
            f"{', '.join(calib.features)}; threshold {calib.threshold:.2f} at quantile {THRESHOLD_QUANTILE}); "
            f"written to {pipe.bundle.root / 'manifest.json'}")
