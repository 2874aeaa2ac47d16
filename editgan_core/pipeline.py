"""``EditGANPipeline``: the facade the web app and the CLI call (load, embed, render, edit, apply).

Owns the device choice and the models of one bundle; every long call takes a per-step
``callback(StepInfo)`` and a ``should_stop()`` for progress and cancellation. Images cross this
boundary as uint8 numpy arrays (H, W, 3) and label maps as uint8 (H, W); latents are W+ tensors of
shape (1, n_latent, style_dim) on the CPU.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from editgan_core.bundle import Bundle
from editgan_core.capabilities import Capabilities, segmenter_missing_message
from editgan_core.defaults import RuntimeDefaults
from editgan_core.edit_layers import choose_layers
from editgan_core.editing import (
    REFINE_PART_COLOUR,
    EditObjective,
    EditTarget,
    EditWeights,
    edit_region,
    infer_edit_classes,
    optimise_edit,
)
from editgan_core.fidelity import FidelityChecker, FidelityReport
from editgan_core.inversion import ReconstructionObjective
from editgan_core.losses import image_psnr
from editgan_core.model_card import display_path
from editgan_core.models.stylegan2 import MEAN_LATENT_SAMPLES
from editgan_core.optim import StepInfo, optimise
from editgan_core.photos import PhotoError
from editgan_core.photos.decode import WHITE
from editgan_core.photos.framing import Framing
from editgan_core.photos.pasteback import PasteBack
from editgan_core.photos.workflow import AlignedPhoto, align_photo, paste_edit
from editgan_core.pipeline_results import (
    EditResult,
    EmbedResult,
    InputError,
    Render,
    SegmenterMissingError,
    SharedEditResult,
    edit_metrics,
)
from editgan_core.pti import PivotalTuner, TuningResult, TuningSettings, synthesis_state, tuned_copy
from editgan_core.side_effects import keep_side_effects
from editgan_core.utils import tensor_to_uint8, to_tensor
from editgan_core.vectors import EditVector, VectorError, compose

log = logging.getLogger(__name__)

# User seeds are offset so seed 0 does not replay the draws that initialised a seed-0 GAN's weights.
LATENT_SEED_OFFSET = 1_000_003
# An edit may move a latent this many times the spread of the model's own latents (RMS distance from the
# average): learned vectors at the page's strengths stay within a few spreads; far beyond, pictures are garbage.
MAX_OFFSET_SPREADS = 25.0
SPREAD_SAMPLES = 1024


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def prepare_image(image: np.ndarray | Image.Image | str | Path, size: int,
                  background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """Any photo -> (size, size, 3) uint8: decoded (``photos.decode``), its centre square, resized."""
    try:
        return align_photo(image, Framing("centre", size, padding="edge"), background=background).crop
    except PhotoError as exc:
        raise InputError(str(exc)) from exc


class EditGANPipeline:
    """One bundle's models on one device, with the user's verbs as methods."""

    def __init__(self, bundle: Bundle, generator, segmenter=None, encoder=None, lpips=None,
                 device: torch.device | None = None, w_avg: torch.Tensor | None = None,
                 image_segmenter=None) -> None:
        self.bundle = bundle
        self.device = device or default_device()
        self.generator = generator.to(self.device)
        self.segmenter = segmenter.to(self.device) if segmenter is not None else None
        self.encoder = encoder.to(self.device) if encoder is not None else None
        self.lpips = lpips.to(self.device) if lpips is not None else None
        self.image_segmenter = image_segmenter.to(self.device) if image_segmenter is not None else None
        if self.encoder is None:
            log.warning("model '%s' has no encoder: photos are embedded by optimisation from the average latent, "
                        "which is slower", bundle.id)
        self.noise = [n.to(self.device) for n in self.generator.stored_noise()]
        self.base: EditGANPipeline | None = None  # for a pivotally tuned copy: the pipeline it was tuned from
        self._fidelity: FidelityChecker | None = None
        if w_avg is not None:  # the source checkpoint's own truncation centre (``bundle create`` keeps it)
            self.w_avg = w_avg.detach().reshape(1, -1).float().to(self.device)
        else:
            with torch.no_grad():
                rng = torch.Generator(device="cpu").manual_seed(LATENT_SEED_OFFSET - 1)
                self.w_avg = self.generator.mean_latent(MEAN_LATENT_SAMPLES, rng)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        lpips: bool | str = "auto", image_segmenter: bool = True) -> EditGANPipeline:
        """Load a bundle folder (or a name under ``checkpoints/``); LPIPS if its weights are local. With
        ``image_segmenter=False`` the bundle's pixel segmenter is left unread (retraining it must not need it)."""
        bundle = Bundle.load(path)
        segmenter = bundle.load_segmenter() if bundle.has("segmenter") else None
        encoder = bundle.load_encoder() if bundle.has("encoder") else None
        pixel_reader = bundle.load_image_segmenter() if image_segmenter and bundle.has("image_segmenter") else None
        lp = None
        if lpips:
            from editgan_core.losses import load_lpips

            lp = load_lpips(search_dirs=[bundle.root])
        generator, w_avg = bundle.load_generator_and_average()
        return cls(bundle, generator, segmenter, encoder, lp, torch.device(device) if device else None, w_avg,
                   pixel_reader)

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
        """A valid (1, n_latent, style_dim) latent on the model's device, else ``InputError``."""
        return self._valid_latent(latent).to(self.device)

    def _valid_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """The latent as float32 where it is (``apply`` stays on the CPU: no device, no GPU needed)."""
        latent = torch.as_tensor(latent, dtype=torch.float32)
        if latent.ndim == 2:
            latent = latent[None]
        if tuple(latent.shape[1:]) != self.latent_shape or latent.shape[0] != 1:
            raise InputError(f"latent has shape {tuple(latent.shape)}; this model needs (1, {self.latent_shape[0]}, "
                             f"{self.latent_shape[1]})")
        if not torch.isfinite(latent).all():
            raise InputError("latent contains NaN or infinite values")
        return latent

    @torch.no_grad()
    def sample_latent(self, seed: int, truncation: float = 0.7) -> torch.Tensor:
        """A random face's W+ latent, reproducible from ``seed``."""
        rng = torch.Generator().manual_seed(LATENT_SEED_OFFSET + int(seed))
        return self.latent_from_z(torch.randn(1, self.generator.style_dim, generator=rng), truncation)

    @torch.no_grad()
    def latent_from_z(self, z: torch.Tensor, truncation: float | torch.Tensor = 0.7) -> torch.Tensor:
        """W+ latents (B, n_latent, style_dim) of z (B, style_dim), truncated towards ``w_avg`` (1: none; a (B, 1)
        tensor: one truncation per latent)."""
        w = self.generator.style(torch.as_tensor(z, dtype=torch.float32).to(self.device))
        w = self.w_avg + truncation * (w - self.w_avg)
        return self.generator.w_to_wplus(w).contiguous().cpu()

    def mean_latent(self) -> torch.Tensor:
        return self.generator.w_to_wplus(self.w_avg).contiguous().cpu()

    @functools.cached_property
    def latent_spread(self) -> float:
        """RMS distance of the model's latents from their average, per element (seeded, so reproducible)."""
        rng = torch.Generator().manual_seed(LATENT_SEED_OFFSET)
        z = torch.randn(SPREAD_SAMPLES, self.generator.style_dim, generator=rng)
        with torch.no_grad():
            w = self.generator.style(z.to(self.device))
        return max(float((w - self.w_avg).double().pow(2).mean().sqrt()), 1e-6)

    def check_offset(self, offset: torch.Tensor, what: str) -> None:
        """Refuse an offset of the latent beyond ``MAX_OFFSET_SPREADS`` spreads of the model's latents."""
        spreads = float(offset.detach().double().pow(2).mean().sqrt()) / self.latent_spread
        if not spreads <= MAX_OFFSET_SPREADS:  # also NaN
            raise InputError(f"{what} moves the picture {spreads:.3g} times as far as this model's faces differ "
                             f"from each other; the limit is {MAX_OFFSET_SPREADS:g} (lower the strength)")

    def check_vector(self, vector: EditVector) -> None:
        """Refuse a vector that is out of proportion to this model at strength 1 or at its default strength."""
        self.check_offset(vector.delta * max(1.0, abs(vector.default_scale)),
                          f"vector '{vector.name}' (at strength {max(1.0, abs(vector.default_scale)):g})")

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

    # -- photos ----------------------------------------------------------------------------------
    def align(self, image, points: Mapping[str, tuple[float, float]] | None = None,
              box: Sequence[float] | None = None) -> AlignedPhoto:
        """Decode a photo and crop it to the bundle's framing: from eye and mouth points (photo pixels), a box,
        or else its centre square. Embed ``.crop``; ``paste_back`` puts the edit into ``.photo``."""
        try:
            return align_photo(image, self.bundle.framing, points=points, box=box, background=self.bundle.background)
        except PhotoError as exc:
            raise InputError(str(exc)) from exc

    def paste_back(self, aligned: AlignedPhoto, before: Render, after: Render,
                   class_ids: Sequence[int] | None = None) -> PasteBack:
        """The full-resolution photo with the edit (``before`` -> ``after``: renders of the aligned crop), blended in
        only where labels (of ``class_ids``, if given) or pixels changed; every other photo pixel is the original's."""
        return paste_edit(aligned, before.image, after.image, before.labels, after.labels, class_ids)

    # -- embedding -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, image: np.ndarray) -> torch.Tensor:
        """Encoder-only W+ (or the average latent when the bundle has no encoder)."""
        if self.encoder is None:
            return self.mean_latent()
        return self.encoder(self._image_tensor(prepare_image(image, self.resolution, self.bundle.background))).cpu()

    def embed(self, image, steps: int | None = None, lr: float | None = None,
              callback: Callable[[StepInfo], None] | None = None,
              should_stop: Callable[[], bool] | None = None, report: bool = True) -> EmbedResult:
        """Encoder init, then ``steps`` Adam steps on W+ (warm-up/cosine lr); returns the best latent.

        ``steps`` defaults to ``defaults.embed_steps``, ``lr`` to the bundle's own (``Bundle.embed_lr``).
        With ``report``, the result carries the fidelity report (``fidelity_report``).
        """
        pixels = prepare_image(image, self.resolution, self.bundle.background)
        target = self._image_tensor(pixels)
        init = self.encode(pixels).to(self.device)
        objective = ReconstructionObjective(self.generator, target, self.lpips, self.encoder, noise=self.noise)
        lr = self.bundle.embed_lr if lr is None else lr
        steps = self.defaults.embed_steps if steps is None else steps
        result = optimise(init, objective, steps, lr, "rampcos", callback, should_stop)
        latent = result.best.cpu()
        render = self.render(latent)
        fidelity = self.fidelity_report(pixels, render) if report else None
        return EmbedResult(latent, render, image_psnr(render.image, pixels), result.steps_done, result.stopped,
                           fidelity)

    def encoder_embed(self, image, report: bool = True) -> EmbedResult:
        """The encoder's latent alone (the average latent without an encoder), with its fidelity report."""
        pixels = prepare_image(image, self.resolution)
        latent = self.encode(pixels).detach().cpu()
        render = self.render(latent)
        return EmbedResult(latent, render, image_psnr(render.image, pixels), 0, False,
                           self.fidelity_report(pixels, render) if report else None)

    # -- fidelity and pivotal tuning ---------------------------------------------------------------
    @property
    def fidelity(self) -> FidelityChecker:
        """The out-of-domain probe and its calibration (of the original model, for a tuned copy too)."""
        if self.base is not None:
            return self.base.fidelity
        if self._fidelity is None:
            self._fidelity = FidelityChecker.for_pipeline(self)
        return self._fidelity

    def fidelity_report(self, image, render: Render | np.ndarray) -> FidelityReport:
        """PSNR (and LPIPS) of ``render`` against the photo, and whether the photo is in the model's domain."""
        pixels = prepare_image(image, self.resolution)
        return self.fidelity.report(pixels, render.image if isinstance(render, Render) else render)

    def pivotal_tune(self, image, latent: torch.Tensor, steps: int | None = None, lr: float | None = None,
                     callback: Callable[[StepInfo], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> TuningResult:
        """Fine-tune a copy of the generator around ``latent`` towards the photo (``editgan_core.pti``).

        Returns the tuned weights as plain tensors; ``with_tuned(result.state)`` is the pipeline that edits
        with them. ``steps`` defaults to ``TuningSettings.steps``.
        """
        if self.base is not None:
            raise InputError("this pipeline is already a tuned copy: tune from the original model")
        settings = TuningSettings(**{k: v for k, v in (("steps", steps), ("lr", lr)) if v is not None})
        target = self._image_tensor(prepare_image(image, self.resolution))
        try:
            tuner = PivotalTuner(self.generator, self.check_latent(latent), target, self.noise, self.lpips, settings)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        return tuner.run(callback, should_stop)

    def with_tuned(self, state: dict[str, torch.Tensor]) -> EditGANPipeline:
        """This model with pivotally tuned synthesis weights: one generator copy, everything else shared."""
        base = self.base or self
        try:
            generator = tuned_copy(base.generator, state)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        tuned = EditGANPipeline(base.bundle, generator, base.segmenter, base.encoder, base.lpips, base.device,
                                base.w_avg, base.image_segmenter)
        tuned.base = base
        return tuned

    def tuned_state(self) -> dict[str, torch.Tensor] | None:
        """A tuned copy's synthesis weights (sharing its generator's storage), None for the original model."""
        return synthesis_state(self.generator) if self.base is not None else None

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
                            self._image_tensor(before.image), self._labels_for_colour(weights, [before.labels]),
                            free_classes=list(class_ids))
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
                            self._labels_for_colour(weights, [b.labels for b in befores]), free_classes=list(class_ids))
        objective = EditObjective(self.generator, self.segmenter, target, weights or EditWeights(), self.lpips,
                                  self.encoder, self.noise, self.image_segmenter)
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
        latent = self._valid_latent(latent).cpu()
        for vector, _ in vectors:
            if isinstance(vector, EditVector) and vector.bundle_id != self.bundle.id:
                raise InputError(f"vector '{vector.name}' belongs to model '{vector.bundle_id}', "
                                 f"not to '{self.bundle.id}'")
        try:
            out = compose(latent, vectors)
        except VectorError as exc:
            raise InputError(str(exc)) from exc
        names = ", ".join(v.name if isinstance(v, EditVector) else "offset" for v, _ in vectors)
        self.check_offset(out - latent, f"applying {names}" if names else "the edit")
        return out

    def refine(self, latent: torch.Tensor, vectors: Sequence[tuple[EditVector | torch.Tensor, float | None]],
               steps: int | None = None, lr: float | None = None, weights: EditWeights | None = None,
               callback: Callable[[StepInfo], None] | None = None,
               should_stop: Callable[[], bool] | None = None, keep_step: bool = True,
               keep_parts: bool = False) -> EditResult:
        """Apply vectors, then self-supervised refinement: keep the applied segmentation inside r, the
        original appearance outside it and (default weights) the persisting parts' colours; with
        ``keep_step`` the refinement cannot shorten the applied step (plain refinement undid edits).

        ``keep_parts`` first corrects the applied step for this face alone (``side_effects`` on one face: the
        other parts keep their colour, every part its size), in one shot; ``steps`` may then be 0. A shared
        vector's own correction can only average over its training faces."""
        self._require_segmenter()
        weights = weights or EditWeights(part_colour=REFINE_PART_COLOUR, image_ce=0.0)
        latent = self.check_latent(latent)
        applied = self.apply(latent, vectors).to(self.device)
        before, after = self.render(latent), self.render(applied)
        class_ids = sorted({int(c) for v, _ in vectors for c in getattr(v, "class_ids", [])})
        if not class_ids:
            class_ids = infer_edit_classes(before.labels, after.labels, self.bundle.edit_groups)
        kept = {}
        if keep_parts and bool((applied - latent).any()):
            delta, report = keep_side_effects(self, latent, (applied - latent)[0], class_ids)
            applied, kept = latent + delta.to(self.device), report["side_effects"]
            after = self.render(applied)
        region = edit_region(before.labels, after.labels, class_ids)
        target = EditTarget(torch.from_numpy(after.labels.astype(np.int64)).to(self.device),
                            torch.from_numpy(region).to(self.device), self._image_tensor(before.image),
                            self._labels_for_colour(weights, [before.labels]), free_classes=class_ids)
        steps = self.defaults.refine_steps if steps is None else steps
        result = self._run_edit(latent, target, applied - latent, steps, lr, weights, class_ids, before, callback,
                                should_stop, keep_step)
        if kept:
            result.metrics.update(colour_change_before=kept["colour_change_before"],
                                  colour_change_after=kept["colour_change_after"])
        return result

    def _labels_for_colour(self, weights: EditWeights | None, labels: Sequence[np.ndarray]) -> torch.Tensor | None:
        """The label maps before the edit, when the persisting-part colour term is on (else ``None``)."""
        if weights is None or weights.part_colour <= 0:
            return None
        return torch.from_numpy(np.stack([lab.astype(np.int64) for lab in labels])).to(self.device)

    def _run_edit(self, latent, target: EditTarget, init_delta, steps, lr, weights, class_ids, before: Render,
                  callback, should_stop, keep_step: bool = False) -> EditResult:
        lr = self.defaults.edit_lr if lr is None else lr
        objective = EditObjective(self.generator, self.segmenter, target, weights or EditWeights(), self.lpips,
                                  self.encoder, self.noise, self.image_segmenter)
        result = optimise_edit(objective, latent, init_delta, steps, lr, callback, should_stop,
                               keep_init_step=keep_step)
        delta = result.best.cpu()
        new_latent = latent.cpu() + delta
        after = self.render(new_latent)
        region = target.region[0].cpu().numpy()
        metrics = edit_metrics(before, after, region, target.labels[0].cpu().numpy(), class_ids)
        metrics.update(loss_start=result.history[0]["loss"] if result.history else result.best_loss,
                       loss_best=result.best_loss)
        return EditResult(delta[0], new_latent, after, region, class_ids, metrics, result.steps_done, result.stopped)
