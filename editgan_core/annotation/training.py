"""Train the segmentation branch from an annotation set, tell which classes need more labels, install it.

The final ensemble is trained on every annotation with ``train.pixel_ensemble`` (the code behind
``train.segmenter``); the bundle's segmenter is replaced only once it is complete (an atomic file
swap, then the manifest), so a cancel or a crash leaves the old one in place. Cross-validation then
trains smaller ensembles with some annotations left out and scores them on those: per-class IoU on
pixels the model has not seen is the honest answer to "which parts should I label more of?".
Features are synthesised once per annotation and shared by every training run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from editgan_core.annotation.store import AnnotationError
from editgan_core.bundle import Bundle, write_manifest
from editgan_core.bundle_build import add_history
from editgan_core.models.segmenter import PixelEnsemble
from editgan_core.pixel_sampling import Features
from editgan_core.scoring import confusion, iou_per_class
from editgan_core.train.pixel_ensemble import TrainProgress, train_ensemble

SEGMENTER_FILE = "segmenter.safetensors"
MIN_ANNOTATIONS = 2  # cross-validation needs one to leave out and one to train on


class TrainingCancelled(Exception):
    """Raised when ``should_stop`` says so; nothing was installed."""


@dataclass(frozen=True)
class TrainSettings:
    """How much training: the final ensemble, then the smaller ones of cross-validation (``folds`` 0: none)."""

    members: int = 4
    steps: int = 1000
    pixels: int = 2048
    class_balance: float = 0.5
    folds: int = 4
    cv_members: int = 2
    cv_steps: int = 400

    def cv_folds(self, annotations: int) -> int:
        """Folds of cross-validation over ``annotations`` images; 0 (none) when fewer than two would be."""
        folds = min(self.folds, annotations)
        return folds if folds >= 2 else 0

    def total_steps(self, annotations: int) -> int:
        return self.members * self.steps + self.cv_folds(annotations) * self.cv_members * self.cv_steps


@dataclass
class TrainStatus:
    """What the progress callback sees: the phase, the overall step and the current loss."""

    phase: str
    step: int
    steps: int
    loss: float
    accuracy: float


@dataclass
class CrossValidation:
    """Per-class IoU on left-out annotations (None: the class is in no annotation), and labelled pixel counts."""

    folds: int
    per_class: dict[str, float | None]
    labelled_pixels: dict[str, int]

    @property
    def miou(self) -> float:
        values = [v for v in self.per_class.values() if v is not None]
        return float(np.mean(values)) if values else float("nan")

    def weakest(self, count: int = 3) -> list[str]:
        """The classes with the lowest IoU: where more labels help most."""
        scored = sorted((v, k) for k, v in self.per_class.items() if v is not None)
        return [k for _, k in scored[:count]]


@dataclass
class TrainReport:
    ensemble: PixelEnsemble
    annotations: int
    seconds: float
    cv: CrossValidation | None = None
    figures: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def annotation_features(pipeline, latents: Sequence[torch.Tensor]) -> list[Features]:
    """The generator's feature maps at each annotation's latent (computed once, shared by all runs)."""
    return [[f.detach() for f in pipeline.generator.synthesis(pipeline.check_latent(latent), noise=pipeline.noise,
                                                              return_features=True).features] for latent in latents]


class _Ticker:
    """Turns ``train_ensemble``'s per-member steps into one overall count, and raises when asked to stop."""

    def __init__(self, total: int, progress: Callable[[TrainStatus], None] | None,
                 should_stop: Callable[[], bool] | None) -> None:
        self.total, self.done, self.phase, self.installed = total, 0, "", False
        self.progress, self.should_stop = progress, should_stop

    def __call__(self, info: TrainProgress) -> None:
        self.done += 1
        if self.should_stop is not None and self.should_stop():
            outcome = ("the new segmenter is installed; only its cross-validation was skipped" if self.installed
                       else "the segmenter was not changed")
            raise TrainingCancelled(f"training cancelled during {self.phase}: {outcome}")
        if self.progress is not None:
            self.progress(TrainStatus(self.phase, self.done, self.total, info.loss, info.accuracy))


def _train(features: list[Features], labels: list[np.ndarray], num_classes: int, widths: list[int], members: int,
           steps: int, settings: TrainSettings, ticker: _Ticker) -> PixelEnsemble:
    return train_ensemble(features, [torch.from_numpy(y.astype(np.int64)) for y in labels], num_classes, widths,
                          members=members, steps=steps, pixels_per_step=settings.pixels,
                          class_balance=settings.class_balance, progress=ticker)


def cross_validate(features: list[Features], labels: list[np.ndarray], names: list[str], widths: list[int],
                   settings: TrainSettings, ticker: _Ticker) -> CrossValidation:
    """Annotation k goes to fold k mod F; each fold is predicted by an ensemble trained on the others."""
    folds, num_classes = settings.cv_folds(len(labels)), len(names)
    conf = np.zeros((num_classes, num_classes), np.int64)
    for fold in range(folds):
        ticker.phase = f"cross-validation, fold {fold + 1} of {folds}"
        train = [k for k in range(len(labels)) if k % folds != fold]
        held = [k for k in range(len(labels)) if k % folds == fold]
        model = _train([features[k] for k in train], [labels[k] for k in train], num_classes, widths,
                       settings.cv_members, settings.cv_steps, settings, ticker)
        for k in held:
            conf += confusion(model.predict(features[k])[0].cpu().numpy(), labels[k], num_classes)
    ious = iou_per_class(conf)
    counts = np.bincount(np.concatenate([y.ravel() for y in labels]).astype(np.int64), minlength=num_classes)
    present = conf.sum(1) > 0
    return CrossValidation(folds, {n: (float(ious[i]) if present[i] else None) for i, n in enumerate(names)},
                           {n: int(counts[i]) for i, n in enumerate(names)})


@dataclass
class TrainingSet:
    """The checked label maps, the class names, the feature widths and each annotation's feature maps."""

    labels: list[np.ndarray]
    names: list[str]
    widths: list[int]
    features: list[Features]


def training_set(pipeline, latents: Sequence[torch.Tensor], labels: Sequence[np.ndarray]) -> TrainingSet:
    if len(latents) != len(labels) or len(labels) < MIN_ANNOTATIONS:
        raise ValueError(f"need at least {MIN_ANNOTATIONS} annotated images (and one label map each), got "
                         f"{len(labels)}")
    return TrainingSet([pipeline.check_labels(y).astype(np.uint8) for y in labels],
                       [c.name for c in pipeline.bundle.classes], pipeline.generator.feature_channels(),
                       annotation_features(pipeline, latents))


def train_final(data: TrainingSet, settings: TrainSettings, progress: Callable[[TrainStatus], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> TrainReport:
    """The final ensemble on every annotation (the first phase of ``train_segmenter``)."""
    start = time.perf_counter()
    ticker = _Ticker(settings.total_steps(len(data.labels)), progress, should_stop)
    ticker.phase = "training"
    ensemble = _train(data.features, data.labels, len(data.names), data.widths, settings.members, settings.steps,
                      settings, ticker)
    return TrainReport(ensemble, len(data.labels), time.perf_counter() - start)


def validate(data: TrainingSet, settings: TrainSettings, progress: Callable[[TrainStatus], None] | None = None,
             should_stop: Callable[[], bool] | None = None, installed: bool = True) -> CrossValidation | None:
    """Cross-validation after the final ensemble is installed (the second phase of ``train_segmenter``; its steps
    counted after the first phase's; ``installed`` says what a cancel leaves); None with fewer than two folds."""
    if not settings.cv_folds(len(data.labels)):
        return None
    ticker = _Ticker(settings.total_steps(len(data.labels)), progress, should_stop)
    ticker.done, ticker.installed = settings.members * settings.steps, installed
    return cross_validate(data.features, data.labels, data.names, data.widths, settings, ticker)


def train_segmenter(pipeline, latents: Sequence[torch.Tensor], labels: Sequence[np.ndarray],
                    settings: TrainSettings | None = None, progress: Callable[[TrainStatus], None] | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    on_trained: Callable[[TrainReport], None] | None = None) -> TrainReport:
    """Train the final ensemble on every annotation, hand it to ``on_trained`` (e.g. ``install_segmenter``),
    then cross-validate. ``should_stop`` cancels (``TrainingCancelled``) at the next step."""
    settings = settings or TrainSettings()
    start = time.perf_counter()
    data = training_set(pipeline, latents, labels)
    report = train_final(data, settings, progress, should_stop)
    if on_trained is not None:
        on_trained(report)
    report.cv = validate(data, settings, progress, should_stop, installed=on_trained is not None)
    report.seconds = time.perf_counter() - start
    return report


def check_installable(bundle: Bundle) -> None:
    """Refuse before training, not after it, when the bundle folder cannot take a new segmenter."""
    if not os.access(bundle.root, os.W_OK):
        raise AnnotationError(f"bundle '{bundle.id}' is in a folder that cannot be written ({bundle.root.name}); "
                              "copy it to a writable folder (bundle create, or cp -r) to train its segmenter")


def install_segmenter(pipeline, report: TrainReport, note: str = "trained from the studio's annotations") -> Bundle:
    """Write the ensemble into the bundle (atomic swap, then the manifest) and hand it to the running pipeline."""
    bundle = pipeline.bundle
    verb = "replaced" if bundle.has("segmenter") else "added"
    report.ensemble.save(bundle.root / SEGMENTER_FILE)
    manifest = dict(bundle.manifest)
    entry = {"file": SEGMENTER_FILE, "annotations": report.annotations, "members": len(report.ensemble.members),
             "note": note}
    manifest["segmenter"] = entry
    add_history(manifest, f"segmentation branch {verb}: {report.annotations} annotations ({note})")
    write_manifest(bundle.root, manifest)
    pipeline.bundle = Bundle.load(bundle.root)
    pipeline.segmenter = report.ensemble.to(pipeline.device).eval()
    return pipeline.bundle
