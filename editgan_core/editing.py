"""EditGAN's editing objective: segmentation inside the region, appearance outside it.

Learning a vector from a painted mask and the self-supervised refinement after applying one are the
same optimisation over δw+ with different targets, so both go through ``optimise_edit``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from editgan_core.losses import LazyTerm, masked_cross_entropy, masked_l2
from editgan_core.optim import OptimResult, StepInfo, optimise


@dataclass
class EditWeights:
    """Loss weights; defaults follow the official EditGAN tool (LPIPS only when its weights exist)."""

    ce: float = 1.0
    l2: float = 75.0
    lpips: float = 150.0
    encoder: float = 1.0
    # The encoder term is a third of a step's cost at 64 px: computed lazily (``LazyTerm``), every k-th step.
    encoder_every: int = 8
    # Mean colour of every part that persists (same class before and after, inside the region too) except
    # the edited classes, each part weighted alike: the pixel L2 outside r lets a small part (the irises)
    # change colour cheaply, while holding the edited parts' colour (a smile's lips) undoes the edit.
    part_colour: float = 0.0
    # Pixel L2 inside r towards ``EditTarget.inside_image``: only where the edited picture is known (a preset
    # learned from renderer pairs knows its true target; a painted map gives labels only).
    inside_rgb: float = 0.0
    # Cross-entropy of the bundle's pixel segmenter (models.image_segmenter) on the painted labels inside r,
    # when the bundle has one: the segmentation branch alone can be satisfied by features the pixels do not
    # show (on the demo, lowered eyebrows the branch read and the judge did not: docs/results.md).
    image_ce: float = 1.0


# Refinement's default colour term: refining with it (and without shortening the applied step) kept the
# presets' success and cut the eyes' colour drift in eval.strict; plain refinement tinted them more.
REFINE_PART_COLOUR = 100.0

STRAY_PIXELS = 2  # a class with fewer changed pixels than this is a stray brush mark, not an edited part
STRAY_SHARE = 0.05  # ... nor one holding less than this share of the changed pixels


def changed_classes(original: np.ndarray, edited: np.ndarray, ignore_stray: bool = False) -> list[int]:
    """Class ids on either side of every changed pixel; with ``ignore_stray``, only classes with at least
    ``STRAY_PIXELS`` changed pixels and ``STRAY_SHARE`` of the change (so a slip of the brush onto the hair
    does not make all the hair part of the edit)."""
    changed = original != edited
    values = np.concatenate([original[changed], edited[changed]])
    classes, counts = np.unique(values, return_counts=True)
    if ignore_stray:
        floor = max(STRAY_PIXELS, STRAY_SHARE * changed.sum())
        kept = classes[counts >= floor]
        classes = kept if len(kept) else classes
    return sorted(int(c) for c in classes)


def infer_edit_classes(original: np.ndarray, edited: np.ndarray,
                       groups: dict[str, Sequence[int]] | None = None, container_ratio: float = 4.0) -> list[int]:
    """The paper's Q_edit for a painted change (stray brush marks ignored: ``changed_classes``).

    With the bundle's edit groups (e.g. smile = lips + mouth interior), Q is every group that a
    changed class belongs to, so painting lips over skin does not pull the whole skin into r. Without
    groups, classes much larger than the change (skin, background: containers painted over) drop out.
    """
    touched = changed_classes(original, edited, ignore_stray=True)
    if groups:
        selected = sorted({c for group in groups.values() if set(group) & set(touched) for c in group})
        if selected:
            return selected
    n_changed = int((original != edited).sum())
    return [c for c in touched
            if max((original == c).sum(), (edited == c).sum()) <= container_ratio * max(n_changed, 1)] or touched


def edit_region(original: np.ndarray, edited: np.ndarray, class_ids: Sequence[int] | None = None,
                dilate: int | None = None) -> np.ndarray:
    """Region r: changed pixels plus the edited classes' pixels in both maps, dilated.

    ``dilate`` is the number of 3x3 dilations (default scales with resolution: 3 at 512 px, as in the
    official tool, 1 at 64 px). Returns a bool (H, W) mask.
    """
    if original.shape != edited.shape:
        raise ValueError(f"label maps differ in shape: {original.shape} vs {edited.shape}")
    if class_ids is None:
        class_ids = infer_edit_classes(original, edited)
    region = (original != edited) | np.isin(original, class_ids) | np.isin(edited, class_ids)
    if dilate is None:
        dilate = max(1, round(3 * original.shape[0] / 512))
    if dilate > 0 and region.any():
        region = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=dilate).astype(bool)
    return region


@dataclass
class EditTarget:
    """Everything the edit objective compares against, on the model's device.

    One image, or a batch of B images that share one δw+ (a preset learned on several faces).
    """

    labels: torch.Tensor  # (H, W) or (B, H, W) int64 target segmentation
    region: torch.Tensor  # (H, W) or (B, H, W) bool
    image: torch.Tensor  # (B, 3, H, W) appearance to keep outside the region
    before_labels: torch.Tensor | None = None  # (H, W) or (B, H, W): enables the persisting-part colour term
    inside_image: torch.Tensor | None = None  # (B, 3, H, W) the edited picture, for EditWeights.inside_rgb
    free_classes: Sequence[int] = ()  # the edited parts: their look may change, so no colour term holds them
    pixels: torch.Tensor = field(init=False)  # flat indices of region pixels into (B, H, W)
    outside: torch.Tensor = field(init=False)  # (B, 1, H, W) float mask of 1 - r
    part_masks: torch.Tensor | None = field(init=False, default=None)  # (B, K, H, W) float, persisting parts
    part_colours: torch.Tensor | None = field(init=False, default=None)  # (B, K, 3) their colours before

    def __post_init__(self) -> None:
        if self.region.ndim == 2:
            self.labels, self.region = self.labels[None], self.region[None]
        if not self.labels.shape == self.region.shape == (self.image.shape[0], *self.image.shape[-2:]):
            raise ValueError(f"target labels {tuple(self.labels.shape)}, region {tuple(self.region.shape)} and "
                             f"image {tuple(self.image.shape)} disagree")
        self.pixels = self.region.flatten().nonzero().squeeze(1)
        self.outside = (~self.region).float()[:, None]
        if self.before_labels is not None:
            self.part_masks, self.part_colours = persisting_parts(self.before_labels.reshape(self.labels.shape),
                                                                  self.labels, self.image,
                                                                  free_classes=self.free_classes)


def persisting_parts(before: torch.Tensor, after: torch.Tensor, image: torch.Tensor, min_pixels: int = 3,
                     free_classes: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and class, the pixels the class keeps (same label before and after) and their mean colour
    in ``image``; classes with fewer than ``min_pixels`` kept pixels, and ``free_classes`` (the edited parts,
    whose look may change), get an empty mask (no term)."""
    classes = torch.arange(int(max(before.max(), after.max())) + 1, device=before.device)
    kept = (before == after)[:, None] & (before[:, None] == classes[None, :, None, None])  # (B, K, H, W)
    kept = kept & (kept.flatten(2).sum(2) >= min_pixels)[..., None, None]
    kept[:, [int(c) for c in free_classes if 0 <= int(c) < len(classes)]] = False
    masks = kept.float()
    return masks, part_means(image, masks)


def part_means(image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B, K, 3) mean colour of ``image`` (B, 3, H, W) over each mask (B, K, H, W); 0 for empty masks."""
    return torch.einsum("bchw,bkhw->bkc", image, masks) / masks.sum((2, 3)).clamp(min=1)[..., None]


class EditObjective:
    """Loss of a W+ latent against an ``EditTarget`` (callable for ``optimise``)."""

    def __init__(self, generator, segmenter, target: EditTarget, weights: EditWeights, lpips=None, encoder=None,
                 noise: Sequence[torch.Tensor] | None = None, image_segmenter=None) -> None:
        self.generator, self.segmenter, self.target = generator, segmenter, target
        self.image_segmenter = image_segmenter if weights.image_ce > 0 else None
        self.weights, self.lpips, self.encoder = weights, lpips, encoder
        self.noise = noise if noise is not None else generator.stored_noise()
        self.target_labels = target.labels.flatten()[target.pixels]
        self.encoder_term = LazyTerm(weights.encoder_every)

    def __call__(self, latent: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        w, t = self.weights, self.target
        out = self.generator.synthesis(latent, noise=self.noise, return_features=True)
        logits = self.segmenter(out.features, pixels=t.pixels)
        ce = masked_cross_entropy(logits, self.target_labels)
        l2 = masked_l2(out.image, t.image, t.outside).mean()
        loss = w.ce * ce + w.l2 * l2
        terms = {"ce": ce.item(), "l2": l2.item()}
        if self.image_segmenter is not None:
            read = self.image_segmenter(out.image)
            image_ce = masked_cross_entropy(read.permute(0, 2, 3, 1).reshape(-1, read.shape[1])[t.pixels],
                                            self.target_labels)
            loss = loss + w.image_ce * image_ce
            terms["image_ce"] = image_ce.item()
        if w.inside_rgb > 0 and t.inside_image is not None:
            inside = masked_l2(out.image, t.inside_image, 1.0 - t.outside).mean()
            loss = loss + w.inside_rgb * inside
            terms["inside_rgb"] = inside.item()
        if w.part_colour > 0 and t.part_masks is not None:
            present = t.part_masks.sum((2, 3)) > 0
            drift = (part_means(out.image, t.part_masks) - t.part_colours).pow(2).mean(2)[present].mean()
            loss = loss + w.part_colour * drift
            terms["part_colour"] = drift.item()
        if self.lpips is not None and w.lpips > 0:
            lp = self.lpips(out.image, t.image, mask=t.outside).mean()
            loss = loss + w.lpips * lp
            terms["lpips"] = lp.item()
        if self.encoder is not None and w.encoder > 0:
            loss = loss + w.encoder * self.encoder_term(lambda: F.mse_loss(self.encoder(out.image), latent))
            terms["encoder"] = self.encoder_term.last
        return loss, terms


def layer_mask(n_latent: int, layers: tuple[int, int] | None) -> torch.Tensor:
    """(1, n_latent, 1) float mask: 1 on the W+ rows ``range(*layers)`` (all rows for ``None``)."""
    mask = torch.zeros(1, n_latent, 1)
    start, stop = layers if layers is not None else (0, n_latent)
    if not 0 <= start < stop <= n_latent:
        raise ValueError(f"layer range {layers} is not inside 0..{n_latent}")
    mask[:, start:stop] = 1.0
    return mask


def optimise_edit(objective: EditObjective, latent: torch.Tensor, init_delta: torch.Tensor | None, steps: int,
                  lr: float, callback: Callable[[StepInfo], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, layers: tuple[int, int] | None = None,
                  keep_init_step: bool = False) -> OptimResult:
    """Optimise δw+ so that ``latent + δ`` meets the objective; ``best`` is the δ.

    With a batch of latents (B, n_latent, style_dim) one δ (1, n_latent, style_dim) is shared by all.
    ``layers`` keeps δ zero outside those W+ rows (an edit that needs only the mouth's shape then cannot
    change colours drawn by the fine layers). ``keep_init_step`` holds δ's component along ``init_delta``
    fixed: refinement may then clean up around an applied vector but cannot shorten it.
    """
    base = latent.detach()
    shape = (1, *base.shape[1:])
    init = torch.zeros(shape).to(base) if init_delta is None else init_delta.detach().to(base).reshape(shape)
    if keep_init_step and init.norm() > 0:
        return _optimise_around(objective, base, init, steps, lr, callback, should_stop)
    if layers is None:
        return optimise(init, lambda delta: objective(base + delta), steps, lr, "constant", callback, should_stop)
    mask = layer_mask(shape[1], layers).to(base)
    result = optimise(init * mask, lambda delta: objective(base + delta * mask), steps, lr, "constant", callback,
                      should_stop)
    result.best = result.best * mask
    return result


def _optimise_around(objective: EditObjective, base: torch.Tensor, init: torch.Tensor, steps: int, lr: float,
                     callback, should_stop) -> OptimResult:
    """``optimise_edit`` over δ = init + c, with c kept orthogonal to init."""
    unit = init / init.norm()

    def delta_of(c: torch.Tensor) -> torch.Tensor:
        return init + c - (c * unit).sum() * unit

    result = optimise(torch.zeros_like(init), lambda c: objective(base + delta_of(c)), steps, lr, "constant",
                      callback, should_stop)
    result.best = delta_of(result.best).detach()
    return result


@torch.no_grad()
def region_iou(pred: np.ndarray, target: np.ndarray, region: np.ndarray, class_ids: Sequence[int]) -> float:
    """Mean IoU over ``class_ids`` of two label maps, counted inside ``region`` only."""
    ious = []
    for c in class_ids:
        p, t = (pred == c) & region, (target == c) & region
        union = (p | t).sum()
        if union:
            ious.append((p & t).sum() / union)
    return float(np.mean(ious)) if ious else 1.0
