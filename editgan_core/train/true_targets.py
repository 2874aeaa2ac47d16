"""Preset vectors learned from renderer pairs: each training face embedded as drawn and with its true target.

The procedural domain can draw any face with one attribute changed, so a preset can learn from what the
edit should look like, not only from a painted label map: ``mean_delta`` averages the latent differences
of the pairs (each pair's difference carries that face's embedding noise; the mean keeps what all share),
``median_delta`` takes their coordinate-wise median instead (a pair whose embedding went astray cannot pull
it), ``fit_delta`` tunes that mean with the paper's shared objective plus the true target's pixels inside
the region and the persisting parts' colours, and ``distil_delta`` tunes it so that each face's edited render
matches the generator's render of its embedded true target over the whole picture. A studio user's vector has
painted maps only, so these methods are for the shipped presets of a procedural domain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from editgan_core.edit_layers import coherent_mean
from editgan_core.editing import EditObjective, EditTarget, EditWeights, edit_region, optimise_edit
from editgan_core.embedding_cache import EmbeddingCache
from editgan_core.eval.strict_metrics import persisting_masks
from editgan_core.optim import StepInfo, optimise
from editgan_core.pipeline import EditGANPipeline
from editgan_core.side_effects import TrueChanges, label_geometry
from editgan_core.utils import to_tensor


def true_target_latents(pipeline: EditGANPipeline, domain, attribute: str, value: float, seeds: list[int],
                        embed_steps: int, cache: EmbeddingCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Embedded renders (N, n_latent, style_dim) of the faces as drawn and with ``attribute`` set to ``value``."""
    cache = cache or EmbeddingCache(None)
    attrs = [domain.sample_attributes(s) for s in seeds]
    faces = [domain.render(a, pipeline.resolution).image for a in attrs]
    targets = [domain.render({**a, attribute: value}, pipeline.resolution).image for a in attrs]
    return cache.embed_pairs(pipeline, seeds, attribute, value, faces, targets, embed_steps)


DIRECTION_PAIRS = 48  # renderer pairs behind one attribute's direction (attribute_direction)


def attribute_direction(pipeline: EditGANPipeline, domain, attribute: str, seeds: Iterable[int], embed_steps: int,
                        cache: EmbeddingCache | None = None, pairs: int = DIRECTION_PAIRS) -> torch.Tensor:
    """The mean latent step that moves ``attribute`` from the bottom of its range to the top.

    Half the pairs are faces drawn in the lower half of the range and moved to its top, half are faces from the
    upper half moved to its bottom (that step negated), so what the faces share besides the attribute cancels.
    A preset holds another attribute still by adding a multiple of this (``PresetSpec.held``), as InterFaceGAN
    conditions one direction on another.
    """
    low, high = domain.ATTRIBUTE_RANGES[attribute]
    middle = 0.5 * (low + high)
    lower, upper = [], []  # the first faces of each half, in seed order: each seed is drawn once
    for seed in seeds:
        side = lower if domain.sample_attributes(seed)[attribute] < middle else upper
        if len(side) < pairs // 2:
            side.append(seed)
        if len(lower) == len(upper) == pairs // 2:
            break
    if not lower or not upper:
        raise RuntimeError(f"no faces on both sides of {attribute}'s range among the seeds")
    raised = true_target_latents(pipeline, domain, attribute, high, lower, embed_steps, cache)
    lowered = true_target_latents(pipeline, domain, attribute, low, upper, embed_steps, cache)
    return torch.cat([raised[1] - raised[0], lowered[0] - lowered[1]]).mean(0)


def _true_label_maps(domain, attribute: str, value: float, seeds: list[int],
                     resolution: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The renderer's exact label maps of each face as drawn and of its true target."""
    for seed in seeds:
        attrs = domain.sample_attributes(seed)
        yield domain.render(attrs, resolution).labels, domain.render({**attrs, attribute: value}, resolution).labels


def true_part_masks(domain, attribute: str, value: float, seeds: list[int], resolution: int, n_classes: int,
                    class_ids: list[int]) -> torch.Tensor:
    """(N, n_classes, H, W): per face, the pixels each part outside ``class_ids`` covers both as drawn and in its
    true target, from the renderer's exact label maps: where the side-effect correction keeps colours."""
    masks = torch.zeros(len(seeds), n_classes, resolution, resolution)
    for i, (before, after) in enumerate(_true_label_maps(domain, attribute, value, seeds, resolution)):
        for c, mask in persisting_masks(before, after).items():
            if c < n_classes and c not in class_ids:
                masks[i, c] = torch.from_numpy(mask)
    return masks


PLACE_MIN_PIXELS = 4  # a part this small or absent in either map has no centroid worth holding


def true_part_changes(domain, attribute: str, value: float, seeds: list[int], resolution: int,
                      n_classes: int) -> TrueChanges:
    """What each face's true edit does to every part's image share and centroid, from the renderer's exact
    label maps: the sizes and places the side-effect correction holds (a moved pupil keeps its size)."""
    area, place, present = [], [], []
    for labels in _true_label_maps(domain, attribute, value, seeds, resolution):
        before, after = (label_geometry(torch.from_numpy(m), n_classes) for m in labels)
        area.append(after[0] - before[0])
        place.append(after[1] - before[1])
        present.append((before[2] >= PLACE_MIN_PIXELS) & (after[2] >= PLACE_MIN_PIXELS))
    return TrueChanges(torch.stack(area), torch.stack(place), torch.stack(present))


def mean_delta(originals: torch.Tensor, targets: torch.Tensor, min_coherence: float) -> tuple[torch.Tensor, dict]:
    """The pairs' mean latent difference on the rows at least ``min_coherence`` coherent, and what was kept."""
    delta, coherence = coherent_mean(targets - originals, min_coherence)
    rows = [i for i, c in enumerate(coherence.tolist()) if c >= min_coherence]
    return delta, {"rows": rows, "min_coherence": min_coherence,
                   "row_coherence": [round(c, 3) for c in coherence.tolist()]}


def median_delta(originals: torch.Tensor, targets: torch.Tensor, min_coherence: float) -> tuple[torch.Tensor, dict]:
    """The pairs' coordinate-wise median latent difference, on the rows ``mean_delta`` would keep."""
    deltas = targets - originals
    _mean, extra = mean_delta(originals, targets, min_coherence)
    keep = torch.zeros(deltas.shape[1], 1, dtype=deltas.dtype)
    keep[extra["rows"]] = 1
    return deltas.median(0).values * keep, {**extra, "estimator": "median"}


def fit_delta(pipeline: EditGANPipeline, originals: torch.Tensor, targets: torch.Tensor, class_ids: list[int],
              init: torch.Tensor, steps: int, weights: EditWeights, lr: float | None = None
              ) -> tuple[torch.Tensor, dict]:
    """One δ for all pairs: the embedded target's segmentation and pixels inside r, the face's outside.

    Both sides are the generator's own renders of the embeddings, so the objective asks only for what the
    generator can draw from these latents.
    """
    pipeline._require_segmenter()
    befores = [pipeline.render(w[None]) for w in originals]
    afters = [pipeline.render(w[None]) for w in targets]
    regions = [edit_region(b.labels.astype(np.int64), a.labels.astype(np.int64), class_ids)
               for b, a in zip(befores, afters, strict=True)]
    device = pipeline.device
    target = EditTarget(torch.from_numpy(np.stack([a.labels for a in afters]).astype(np.int64)).to(device),
                        torch.from_numpy(np.stack(regions)).to(device),
                        to_tensor(np.stack([b.image for b in befores])).to(device),
                        torch.from_numpy(np.stack([b.labels for b in befores]).astype(np.int64)).to(device)
                        if weights.part_colour > 0 else None,
                        to_tensor(np.stack([a.image for a in afters])).to(device), free_classes=class_ids)
    objective = EditObjective(pipeline.generator, pipeline.segmenter, target, weights, pipeline.lpips,
                              pipeline.encoder, pipeline.noise)
    result = optimise_edit(objective, originals.to(device), init, steps,
                           pipeline.defaults.edit_lr if lr is None else lr)
    start = result.history[0]["loss"] if result.history else result.best_loss
    return result.best.cpu()[0], {"steps": steps, "loss_start": start, "loss_best": result.best_loss,
                                  "inside_rgb": weights.inside_rgb, "part_colour": weights.part_colour}


DISTIL_BATCH = 16  # pairs per step of distil_delta: a third of the shipped presets' 48, for speed on a CPU
DISTIL_LR = 0.01


def distil_delta(pipeline: EditGANPipeline, originals: torch.Tensor, targets: torch.Tensor, init: torch.Tensor,
                 steps: int, lr: float = DISTIL_LR, batch: int = DISTIL_BATCH, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, dict]:
    """One δ whose renders ``G(w_i + δ)`` match ``G(w_target_i)``, pixel for pixel over the whole picture.

    Why: the mean of the latent differences weighs every coordinate alike, so coordinates that barely show on
    the training faces (and cancel there) can still move other parts on new faces: on the demo the mean smile
    grew noses. Matching the pictures holds what each true target shows, the edit and the unchanged rest,
    and asks nothing of the coordinates that do not show. Both sides are the generator's own renders, so the
    fit asks only for what it can draw. Minibatches are drawn with ``seed``: the same pairs give the same δ.
    """
    if steps < 0 or batch < 1 or not lr > 0:
        raise ValueError(f"distillation needs steps >= 0, batch >= 1 and lr > 0 (got {steps}, {batch}, {lr})")
    device, generator = pipeline.device, pipeline.generator
    originals, targets = originals.to(device), targets.to(device)
    with torch.no_grad():
        pictures = torch.cat([generator.synthesis(t, noise=pipeline.noise).image
                              for t in targets.split(batch)])
    draw = torch.Generator().manual_seed(seed)

    def objective(delta: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        pick = torch.randperm(len(originals), generator=draw)[:batch].to(device)
        render = generator.synthesis(originals[pick] + delta, noise=pipeline.noise).image
        return (render - pictures[pick]).pow(2).mean(), {}

    # Each step's loss is on another minibatch, so "the best step" would be the easiest minibatch's: the last
    # value is kept, not ``OptimResult.best``.
    last = init.detach().to(device)[None]

    def keep_last(info: StepInfo) -> None:
        nonlocal last
        last = info.variable.clone()
        if progress:
            progress(info.step, info.steps)

    result = optimise(last, objective, steps, lr, callback=keep_last)
    info = {"steps": steps, "lr": lr, "batch": batch}
    if result.history:  # the mean over the last tenth of the steps: one minibatch's loss is noisy
        info["loss_end"] = round(float(np.mean([h["loss"] for h in result.history[-max(1, steps // 10):]])), 6)
    return last.cpu()[0], info
