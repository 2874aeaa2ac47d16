"""``EditGANPipeline``: the facade the web app and the CLI call (load, embed, render, edit, apply).

Owns the device choice and the models of one bundle; every long call takes a per-step
``callback(StepInfo)`` and a ``should_stop()`` for progress and cancellation. Images cross this
boundary as uint8 numpy arrays (H, W, 3) and label maps as uint8 (H, W); latents are W+ tensors of
shape (1, n_latent, style_dim) on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from editgan_core.bundle import Bundle
from editgan_core.capabilities import Capabilities, segmenter_missing_message
from editgan_core.defaults import RuntimeDefaults
from editgan_core.edit_layers import choose_layers
from editgan_core.editing import (
    EditObjective,
    EditTarget,
    EditWeights,
    edit_region,
    infer_edit_classes,
    optimise_edit,
    region_iou,
)
from editgan_core.inversion import ReconstructionObjective
from editgan_core.losses import image_psnr
from editgan_core.model_card import display_path
from editgan_core.models.stylegan2 import MEAN_LATENT_SAMPLES
from editgan_core.optim import StepInfo, optimise
from editgan_core.utils import tensor_to_uint8, to_tensor
from editgan_core.vectors import EditVector, VectorError, compose

log = logging.getLogger(__name__)

# User seeds are offset so seed 0 does not replay the draws that initialised a seed-0 GAN's weights.
LATENT_SEED_OFFSET = 1_000_003
MAX_INPUT_PIXELS = 64_000_000  # refuse decompression bombs / absurd uploads before decoding


class InputError(ValueError):
    """Bad user input (image, label map, latent); the message is meant for the user."""


class SegmenterMissingError(InputError):
    """The action needs a segmentation branch, which this bundle does not have yet (see ``capabilities``)."""


@dataclass
class Render:
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray | None  # (H, W) uint8


@dataclass
class EmbedResult:
    latent: torch.Tensor
    render: Render
    psnr: float
    steps_done: int
    stopped: bool


@dataclass
class EditResult:
    """Outcome of learning or refining an edit."""

    delta: torch.Tensor  # δw+ (n_latent, style_dim) relative to the input latent
    latent: torch.Tensor  # input latent + δ
    render: Render
    region: np.ndarray  # (H, W) bool
    class_ids: list[int]
    metrics: dict[str, float] = field(default_factory=dict)
    steps_done: int = 0
    stopped: bool = False


@dataclass
class SharedEditResult:
    """One δw+ learned on several images (``learn_shared_edit``), with their mean figures."""

    delta: torch.Tensor  # (n_latent, style_dim)
    class_ids: list[int]
    metrics: dict[str, float] = field(default_factory=dict)
    steps_done: int = 0
    stopped: bool = False
    layers: tuple[int, int] | None = None  # W+ rows δ was restricted to (None: all)


def edit_metrics(before: Render, after: Render, region: np.ndarray, target_labels: np.ndarray,
                 class_ids: Sequence[int]) -> dict[str, float]:
    """Region IoU with the target labels and mean pixel change (0..1) outside and inside the region."""
    diff = np.abs(after.image.astype(np.float32) - before.image.astype(np.float32)).mean(axis=2) / 255.0
    outside = ~region
    return {
        "region_iou": region_iou(after.labels, target_labels, region, class_ids),
        "change_outside": float(diff[outside].mean()) if outside.any() else 0.0,
        "change_inside": float(diff[region].mean()) if region.any() else 0.0,
        "region_fraction": float(region.mean()),
    }


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def prepare_image(image: np.ndarray | Image.Image | str | Path, size: int) -> np.ndarray:
    """Any photo -> (size, size, 3) uint8: EXIF-rotated, RGB, centre-cropped square, resized."""
    if isinstance(image, (str, Path)):
        try:
            image = Image.open(image)
        except (OSError, Image.DecompressionBombError) as exc:
            raise InputError(f"cannot read the image: {exc}") from exc
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise InputError(f"expected an RGB image, got an array of shape {image.shape}")
        if image.dtype != np.uint8:
            if not np.isfinite(image).all():
                raise InputError("the image contains NaN or infinite values")
            image = np.clip(image * (255 if image.max() <= 1 else 1), 0, 255).astype(np.uint8)
        image = Image.fromarray(image[..., :3])
    if image.width * image.height > MAX_INPUT_PIXELS:
        raise InputError(f"image is {image.width}x{image.height}; the limit is {MAX_INPUT_PIXELS // 1_000_000} MP")
    image = ImageOps.exif_transpose(image).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    return np.array(image, dtype=np.uint8)


class EditGANPipeline:
    """One bundle's models on one device, with the user's verbs as methods."""

    def __init__(self, bundle: Bundle, generator, segmenter=None, encoder=None, lpips=None,
                 device: torch.device | None = None, w_avg: torch.Tensor | None = None) -> None:
        self.bundle = bundle
        self.device = device or default_device()
        self.generator = generator.to(self.device)
        self.segmenter = segmenter.to(self.device) if segmenter is not None else None
        self.encoder = encoder.to(self.device) if encoder is not None else None
        self.lpips = lpips.to(self.device) if lpips is not None else None
        if self.encoder is None:
            log.warning("model '%s' has no encoder: photos are embedded by optimisation from the average latent, "
                        "which is slower", bundle.id)
        self.noise = [n.to(self.device) for n in self.generator.stored_noise()]
        if w_avg is not None:  # the source checkpoint's own truncation centre (``bundle create`` keeps it)
            self.w_avg = w_avg.detach().reshape(1, -1).float().to(self.device)
        else:
            with torch.no_grad():
                rng = torch.Generator(device="cpu").manual_seed(LATENT_SEED_OFFSET - 1)
                self.w_avg = self.generator.mean_latent(MEAN_LATENT_SAMPLES, rng)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        lpips: bool | str = "auto") -> EditGANPipeline:
        """Load a bundle folder (or a name under ``checkpoints/``); LPIPS if its weights are local."""
        bundle = Bundle.load(path)
        segmenter = bundle.load_segmenter() if bundle.has("segmenter") else None
        encoder = bundle.load_encoder() if bundle.has("encoder") else None
        lp = None
        if lpips:
            from editgan_core.losses import load_lpips

            lp = load_lpips(search_dirs=[bundle.root])
        generator, w_avg = bundle.load_generator_and_average()
        return cls(bundle, generator, segmenter, encoder, lp, torch.device(device) if device else None, w_avg)

    # -- properties ------------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return self.generator.size

    @property
    def latent_shape(self) -> tuple[int, int]:
        return self.generator.n_latent, self.generator.style_dim

    @property
    def can_segment(self) -> bool:
        return self.segmenter is not None

    @property
    def defaults(self) -> RuntimeDefaults:
        """Steps and learning rates the methods use when the caller passes none (the bundle's, else the core's)."""
        return self.bundle.defaults

    @property
    def capabilities(self) -> Capabilities:
        """Which components this bundle has and what they allow; ``notes()`` says how to add the missing ones."""
        vectors = self.bundle.vectors_dir
        return Capabilities(bundle_id=self.bundle.id, has_encoder=self.encoder is not None,
                            has_segmenter=self.segmenter is not None,
                            has_discriminator=self.bundle.has("discriminator"),
                            presets=len(list(vectors.glob("*.safetensors"))) if vectors.is_dir() else 0,
                            has_lpips=self.lpips is not None, bundle_path=display_path(self.bundle.root))

    # -- latents and rendering -----------------------------------------------------------------
    def check_latent(self, latent: torch.Tensor) -> torch.Tensor:
        latent = torch.as_tensor(latent, dtype=torch.float32)
        if latent.ndim == 2:
            latent = latent[None]
        if tuple(latent.shape[1:]) != self.latent_shape or latent.shape[0] != 1:
            raise InputError(f"latent has shape {tuple(latent.shape)}; this model needs (1, {self.latent_shape[0]}, "
                             f"{self.latent_shape[1]})")
        if not torch.isfinite(latent).all():
            raise InputError("latent contains NaN or infinite values")
        return latent.to(self.device)

    @torch.no_grad()
    def sample_latent(self, seed: int, truncation: float = 0.7) -> torch.Tensor:
        """A random face's W+ latent, reproducible from ``seed``."""
        rng = torch.Generator().manual_seed(LATENT_SEED_OFFSET + int(seed))
        return self.latent_from_z(torch.randn(1, self.generator.style_dim, generator=rng), truncation)

    @torch.no_grad()
    def latent_from_z(self, z: torch.Tensor, truncation: float = 0.7) -> torch.Tensor:
        """W+ latents (B, n_latent, style_dim) of z (B, style_dim), truncated towards ``w_avg`` (1: none)."""
        w = self.generator.style(torch.as_tensor(z, dtype=torch.float32).to(self.device))
        w = self.w_avg + truncation * (w - self.w_avg)
        return self.generator.w_to_wplus(w).contiguous().cpu()

    def mean_latent(self) -> torch.Tensor:
        return self.generator.w_to_wplus(self.w_avg).contiguous().cpu()

    @torch.no_grad()
    def render(self, latent: torch.Tensor, with_labels: bool = True) -> Render:
        with_labels = with_labels and self.segmenter is not None
        out = self.generator.synthesis(self.check_latent(latent), noise=self.noise, return_features=with_labels)
        labels = None
        if with_labels:
            labels = self.segmenter.predict(out.features)[0].to(torch.uint8).cpu().numpy()
        return Render(tensor_to_uint8(out.image)[0], labels)

    def _image_tensor(self, image: np.ndarray) -> torch.Tensor:
        return to_tensor(image[None]).to(self.device)

    # -- embedding -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, image: np.ndarray) -> torch.Tensor:
        """Encoder-only W+ (or the average latent when the bundle has no encoder)."""
        if self.encoder is None:
            return self.mean_latent()
        return self.encoder(self._image_tensor(prepare_image(image, self.resolution))).cpu()

    def embed(self, image, steps: int | None = None, lr: float | None = None,
              callback: Callable[[StepInfo], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> EmbedResult:
        """Encoder init, then ``steps`` Adam steps on W+ (warm-up/cosine lr); returns the best latent.

        ``steps`` defaults to ``defaults.embed_steps``, ``lr`` to the bundle's own (``Bundle.embed_lr``).
        """
        pixels = prepare_image(image, self.resolution)
        target = self._image_tensor(pixels)
        init = self.encode(pixels).to(self.device)
        objective = ReconstructionObjective(self.generator, target, self.lpips, self.encoder, noise=self.noise)
        lr = self.bundle.embed_lr if lr is None else lr
        steps = self.defaults.embed_steps if steps is None else steps
        result = optimise(init, objective, steps, lr, "rampcos", callback, should_stop)
        latent = result.best.cpu()
        render = self.render(latent)
        return EmbedResult(latent, render, image_psnr(render.image, pixels), result.steps_done, result.stopped)

    def embed_many(self, images: np.ndarray, steps: int) -> torch.Tensor:
        """Latents (B, n_latent, style_dim) of model-size uint8 images (B, H, W, 3), optimised together: Adam
        is per element, so each latent gets the update it would get alone (only the best step is shared).
        For benchmarks and preset scripts, where one image at a time wastes the batch."""
        target = to_tensor(np.asarray(images)).to(self.device)
        with torch.no_grad():
            init = self.encoder(target) if self.encoder is not None else self.mean_latent().repeat(
                len(target), 1, 1).to(self.device)
        if steps == 0:
            return init.cpu()
        objective = ReconstructionObjective(self.generator, target, self.lpips, self.encoder, noise=self.noise)
        return optimise(init, objective, steps, self.bundle.embed_lr, "rampcos").best.cpu()

    # -- editing ---------------------------------------------------------------------------------
    def _require_segmenter(self) -> None:
        if self.segmenter is None:
            raise SegmenterMissingError(segmenter_missing_message(self.bundle.id, display_path(self.bundle.root)))

    def check_labels(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (self.resolution, self.resolution):
            raise InputError(f"label map is {labels.shape}; expected {(self.resolution, self.resolution)}")
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.bundle.classes)):
            raise InputError(f"label map has class ids outside 0..{len(self.bundle.classes) - 1}")
        return labels.astype(np.int64)

    def learn_edit(self, latent: torch.Tensor, edited_labels: np.ndarray, steps: int | None = None,
                   lr: float | None = None, weights: EditWeights | None = None, class_ids: Sequence[int] | None = None,
                   callback: Callable[[StepInfo], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> EditResult:
        """Optimise δw+ so the segmentation inside the edit region matches ``edited_labels``."""
        self._require_segmenter()
        latent = self.check_latent(latent)
        before = self.render(latent)
        edited = self.check_labels(edited_labels)
        original = before.labels.astype(np.int64)
        if not (edited != original).any():
            raise InputError("the painted label map is identical to the current one: paint a change first")
        if class_ids is None:
            class_ids = infer_edit_classes(original, edited, self.bundle.edit_groups)
        region = edit_region(original, edited, class_ids)
        target = EditTarget(torch.from_numpy(edited).to(self.device), torch.from_numpy(region).to(self.device),
                            self._image_tensor(before.image), self._labels_for_colour(weights, [before.labels]))
        steps = self.defaults.edit_steps if steps is None else steps
        return self._run_edit(latent, target, None, steps, lr, weights, list(class_ids), before, callback, should_stop)

    def learn_shared_edit(self, latents: Sequence[torch.Tensor], edited_labels: Sequence[np.ndarray],
                          class_ids: Sequence[int], steps: int | None = None, lr: float | None = None,
                          weights: EditWeights | None = None, callback: Callable[[StepInfo], None] | None = None,
                          should_stop: Callable[[], bool] | None = None,
                          layers: tuple[int, int] | str | None = None) -> SharedEditResult:
        """One δw+ that makes each image's painted change at once: a vector meant for reuse (presets).

        Averaging vectors learned one image at a time keeps what they share but shrinks it; optimising
        a single δ on all images keeps its strength where the edit is common to them. ``layers`` restricts
        δ to a W+ row range; ``"auto"`` learns on all rows, keeps the shortest range that holds most of the
        segmentation gain (``edit_layers.choose_layers``) and learns again on it for half the steps.
        """
        self._require_segmenter()
        if not latents or len(latents) != len(edited_labels):
            raise InputError(f"need one painted label map per latent, got {len(latents)} and {len(edited_labels)}")
        latent = torch.cat([self.check_latent(w) for w in latents])
        befores = [self.render(w) for w in latent.split(1)]
        regions, targets = [], []
        for before, painted in zip(befores, edited_labels, strict=True):
            edited = self.check_labels(painted)
            if not (edited != before.labels).any():
                raise InputError("a painted label map is identical to its image's segmentation: nothing to learn")
            regions.append(edit_region(before.labels.astype(np.int64), edited, class_ids))
            targets.append(edited)
        target = EditTarget(torch.from_numpy(np.stack(targets)).to(self.device),
                            torch.from_numpy(np.stack(regions)).to(self.device),
                            torch.cat([self._image_tensor(b.image) for b in befores]),
                            self._labels_for_colour(weights, [b.labels for b in befores]))
        objective = EditObjective(self.generator, self.segmenter, target, weights or EditWeights(), self.lpips,
                                  self.encoder, self.noise)
        steps = self.defaults.edit_steps if steps is None else steps
        lr = self.defaults.edit_lr if lr is None else lr
        result = optimise_edit(objective, latent, None, steps, lr, callback, should_stop,
                               None if layers == "auto" else layers)
        if layers == "auto" and not result.stopped:
            layers, _ = choose_layers(objective, latent, result.best)
            result = optimise_edit(objective, latent, result.best, max(1, steps // 2), lr, callback, should_stop,
                                   layers)
        delta = result.best.cpu()
        pairs = zip(befores, latent.cpu().split(1), regions, targets, strict=True)
        per_image = [edit_metrics(before, self.render(w + delta), region, labels, class_ids)
                     for before, w, region, labels in pairs]
        metrics = {k: float(np.mean([m[k] for m in per_image])) for k in per_image[0]}
        metrics.update(loss_start=result.history[0]["loss"] if result.history else result.best_loss,
                       loss_best=result.best_loss)
        return SharedEditResult(delta[0], list(class_ids), metrics, result.steps_done, result.stopped,
                                None if layers in (None, "auto") else tuple(layers))

    def apply(self, latent: torch.Tensor, vectors: Sequence[tuple[EditVector | torch.Tensor, float | None]]
              ) -> torch.Tensor:
        """w+ + Σ sᵢ·δᵢ (instant); a ``None`` scale means the vector's default scale."""
        latent = self.check_latent(latent).cpu()
        for vector, _ in vectors:
            if isinstance(vector, EditVector) and vector.bundle_id != self.bundle.id:
                raise InputError(f"vector '{vector.name}' belongs to model '{vector.bundle_id}', "
                                 f"not to '{self.bundle.id}'")
        try:
            return compose(latent, vectors)
        except VectorError as exc:
            raise InputError(str(exc)) from exc

    def refine(self, latent: torch.Tensor, vectors: Sequence[tuple[EditVector | torch.Tensor, float | None]],
               steps: int | None = None, lr: float | None = None, weights: EditWeights | None = None,
               callback: Callable[[StepInfo], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> EditResult:
        """Apply vectors, then self-supervised refinement: keep the applied segmentation inside r and the
        original appearance outside it."""
        self._require_segmenter()
        latent = self.check_latent(latent)
        applied = self.apply(latent, vectors).to(self.device)
        before, after = self.render(latent), self.render(applied)
        class_ids = sorted({int(c) for v, _ in vectors for c in getattr(v, "class_ids", [])})
        if not class_ids:
            class_ids = infer_edit_classes(before.labels, after.labels, self.bundle.edit_groups)
        region = edit_region(before.labels, after.labels, class_ids)
        target = EditTarget(torch.from_numpy(after.labels.astype(np.int64)).to(self.device),
                            torch.from_numpy(region).to(self.device), self._image_tensor(before.image),
                            self._labels_for_colour(weights, [before.labels]))
        steps = self.defaults.refine_steps if steps is None else steps
        return self._run_edit(latent, target, applied - latent, steps, lr, weights, class_ids, before, callback,
                              should_stop)

    def _labels_for_colour(self, weights: EditWeights | None, labels: Sequence[np.ndarray]) -> torch.Tensor | None:
        """The label maps before the edit, when the persisting-part colour term is on (else ``None``)."""
        if weights is None or weights.part_colour <= 0:
            return None
        return torch.from_numpy(np.stack([lab.astype(np.int64) for lab in labels])).to(self.device)

    def _run_edit(self, latent, target: EditTarget, init_delta, steps, lr, weights, class_ids, before: Render,
                  callback, should_stop) -> EditResult:
        lr = self.defaults.edit_lr if lr is None else lr
        objective = EditObjective(self.generator, self.segmenter, target, weights or EditWeights(), self.lpips,
                                  self.encoder, self.noise)
        result = optimise_edit(objective, latent, init_delta, steps, lr, callback, should_stop)
        delta = result.best.cpu()
        new_latent = latent.cpu() + delta
        after = self.render(new_latent)
        region = target.region[0].cpu().numpy()
        metrics = edit_metrics(before, after, region, target.labels[0].cpu().numpy(), class_ids)
        metrics.update(loss_start=result.history[0]["loss"] if result.history else result.best_loss,
                       loss_best=result.best_loss)
        return EditResult(delta[0], new_latent, after, region, class_ids, metrics, result.steps_done, result.stopped)
