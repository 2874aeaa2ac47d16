"""Undo a shared vector's side effects: persisting parts keep their colour, every part its size (and place).

A vector averaged or learned over several faces carries small changes nobody asked for (tinted irises,
smaller pupils) when applied to a face. Read with the bundle's own generator and segmenter on the vector's
training latents, those changes are close to linear in a small correction of δ, so a few ridge-regularised
Gauss-Newton steps find a short correction, orthogonal to δ so that the edit keeps its length, that
cancels them on average. It needs no judge and no true targets, so it applies to presets and to vectors
learned in the studio alike. Where a procedural domain knows each training face's true edit, every part's
size and centroid can be held to the change that edit makes (``TrueChanges``): a moved pupil keeps its size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from editgan_core.editing import part_means, persisting_parts

AREA_FLOOR = 0.002  # a part's size is compared relative to itself, but never to less than this image share


@dataclass(frozen=True)
class SideEffectSettings:
    """``ridge``: damping relative to the mean squared sensitivity (larger: shorter, safer corrections);
    ``area_weight``: one relative change of a part's size counts as this much colour change ([-1, 1] units)."""

    ridge: float = 0.1
    iters: int = 2
    area_weight: float = 0.2
    place_weight: float = 0.0  # one image half-width of a part's centroid move counts as this much colour change

    def __post_init__(self) -> None:
        if not (self.ridge > 0 and self.iters >= 1 and self.area_weight >= 0 and self.place_weight >= 0):
            raise ValueError("side-effect settings need ridge > 0, iters >= 1, area_weight >= 0, place_weight >= 0: "
                             f"{self}")


@dataclass(frozen=True)
class TrueChanges:
    """Per training face, what its true edit does to each class (from exact label maps): the change of its image
    share ``area`` (N, K), of its centroid ``place`` (N, 2, K: x, y in [-1, 1]), and where it is drawn both
    before and after (``present`` (N, K), where a centroid means something)."""

    area: torch.Tensor
    place: torch.Tensor
    present: torch.Tensor


def label_geometry(labels: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each class's image share, centroid (2, K) and pixel count in an exact label map (H, W)."""
    onehot = torch.nn.functional.one_hot(labels.long(), n_classes).permute(2, 0, 1).float()
    pixels = onehot.sum((1, 2))
    return onehot.mean((1, 2)), _centroids(onehot, pixels.clamp(min=1)), pixels


@dataclass
class _Face:
    """What must not change on one training face: part masks and colours before, part sizes to keep."""

    latent: torch.Tensor  # (1, n_latent, style_dim)
    masks: torch.Tensor  # (1, K, H, W) persisting parts outside the edited classes
    reference: torch.Tensor  # colour rows, area rows, then (with ``places``) centroid x and y rows
    scale: torch.Tensor  # per-row weight
    places: bool = False


def _render(pipeline, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = pipeline.generator.synthesis(latent, noise=pipeline.noise, return_features=True)
    return out.image, pipeline.segmenter(out.features)


def _areas(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(1).mean((2, 3))[0]


def _centroids(weights: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """(2, K) centroid x and y of per-class pixel weights (K, H, W), in [-1, 1] image coordinates."""
    size = weights.shape[-1]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size, device=weights.device),
                            torch.linspace(-1, 1, size, device=weights.device), indexing="ij")
    return torch.stack([(weights * xs).sum((1, 2)), (weights * ys).sum((1, 2))]) / mass


def _geometry(logits: torch.Tensor) -> torch.Tensor:
    """(3, K): each class's soft image share, then its soft centroid x and y, from the segmenter's logits."""
    p = logits.softmax(1)[0]
    return torch.cat([p.mean((1, 2))[None], _centroids(p, p.sum((1, 2)).clamp(min=1e-3))])


def _rows(pipeline, face: _Face, latent: torch.Tensor) -> torch.Tensor:
    image, logits = _render(pipeline, latent)
    colours = part_means(image, face.masks).flatten()
    if face.places:
        return torch.cat([colours, _geometry(logits).flatten()])
    return torch.cat([colours, _areas(logits)])


@torch.no_grad()
def _face(pipeline, latent: torch.Tensor, delta: torch.Tensor, class_ids: Sequence[int],
          settings: SideEffectSettings, masks: torch.Tensor | None = None,
          changes: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> _Face:
    image, logits = _render(pipeline, latent)
    _, edited_logits = _render(pipeline, latent + delta)
    if masks is None:
        masks, colours = persisting_parts(logits.argmax(1), edited_logits.argmax(1), image, free_classes=class_ids)
    else:
        masks = masks.to(image)
        colours = part_means(image, masks)
    present = (masks.flatten(2).sum(2) > 0).float()[0]  # an absent part has no colour row weight
    colour_scale = present.repeat_interleave(3)
    if changes is not None:  # every part takes the size (and place) its true edit gives it
        area_change, place_change, drawn = (t.to(image) for t in changes)
        places = settings.place_weight > 0  # no place rows at all, rather than rows of weight 0 that thin the ridge
        geometry = _geometry(logits)
        reference = (geometry + torch.cat([area_change[None], place_change]))[:3 if places else 1]
        scale = torch.cat([colour_scale, settings.area_weight / geometry[0].clamp(min=AREA_FLOOR),
                           (settings.place_weight * drawn).repeat(2 if places else 0)])
        return _Face(latent, masks, torch.cat([colours.flatten(), reference.flatten()]), scale, places)
    areas = _areas(logits)
    edited = [int(c) for c in class_ids if 0 <= int(c) < len(areas)]
    areas[edited] = _areas(edited_logits)[edited]  # the edited parts keep their new size
    scale = torch.cat([colour_scale, settings.area_weight / areas.clamp(min=AREA_FLOOR)])
    return _Face(latent, masks, torch.cat([colours.flatten(), areas]), scale)


def _jacobian_and_value(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                        used: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn``'s Jacobian at ``x`` (rows × x's elements) and value, from one forward pass and one backward pass
    per ``used`` row: the rows of absent and edited parts have weight 0, so their rows stay zero for free."""
    x = x.detach().requires_grad_(True)
    value = fn(x)
    jacobian = torch.zeros(value.numel(), x.numel(), device=x.device)
    rows = used.nonzero().flatten().tolist()
    for n, i in enumerate(rows):
        (grad,) = torch.autograd.grad(value[i], x, retain_graph=n + 1 < len(rows))
        jacobian[i] = grad.flatten()
    return jacobian, value.detach()


def worst_colour_change(pipeline, faces: Sequence[_Face], delta: torch.Tensor) -> float:
    """Mean over faces of the largest per-channel move of a persisting part's mean colour (0..1 units)."""
    out = []
    with torch.no_grad():
        for face in faces:
            image, _ = _render(pipeline, face.latent + delta)
            k = face.masks.shape[1] * 3
            change = (part_means(image, face.masks).flatten() - face.reference[:k]).abs() * face.scale[:k]
            out.append(float(change.max()) / 2.0 if k else 0.0)
    return sum(out) / max(len(out), 1)


def _check_part_masks(part_masks: torch.Tensor, latents: torch.Tensor, resolution: int) -> None:
    n = len(latents)
    if part_masks.dim() != 4 or part_masks.shape[0] != n or tuple(part_masks.shape[2:]) != (resolution,) * 2:
        raise ValueError(f"part masks must be ({n}, classes, {resolution}, {resolution}), one stack per latent; "
                         f"got {tuple(part_masks.shape)}")
    if not torch.isfinite(part_masks).all() or part_masks.min() < 0 or part_masks.max() > 1:
        raise ValueError("part masks must hold weights in [0, 1]")


def _check_true_changes(changes: TrueChanges, latents: torch.Tensor) -> None:
    n = len(latents)
    k = changes.area.shape[-1] if changes.area.dim() == 2 else -1
    if changes.area.shape != (n, k) or changes.place.shape != (n, 2, k) or changes.present.shape != (n, k):
        raise ValueError(f"true changes must be area ({n}, K), place ({n}, 2, K) and present ({n}, K), one row per "
                         f"latent; got {tuple(changes.area.shape)}, {tuple(changes.place.shape)}, "
                         f"{tuple(changes.present.shape)}")
    if not (torch.isfinite(changes.area).all() and torch.isfinite(changes.place).all()):
        raise ValueError("true changes must be finite")


def keep_side_effects(pipeline, latents: torch.Tensor, delta: torch.Tensor, class_ids: Sequence[int],
                      settings: SideEffectSettings | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      part_masks: torch.Tensor | None = None,
                      true_changes: TrueChanges | None = None) -> tuple[torch.Tensor, dict]:
    """δ corrected on ``latents`` (N, n_latent, style_dim) so parts outside ``class_ids`` keep colour and
    size; returns the corrected δ and what the correction did on those latents.

    ``part_masks`` (N, K, H, W), where known, says exactly which pixels of each face must keep their colour
    (a procedural domain's own label maps of the face and of its true edit); otherwise the segmenter's
    reading of the face and of its edit decides, and it is weakest on the thin parts (eyebrows, pupils)
    whose tint a shared vector most often changes.

    ``true_changes``, where known, gives every part's size and centroid on each face the change its true edit
    makes, with ``settings.place_weight`` on the centroids; otherwise every part keeps its size, and the
    edited parts the size the uncorrected edit gives them.
    """
    if pipeline.segmenter is None:
        raise ValueError("keeping side effects needs the bundle's segmenter")
    if part_masks is not None:
        _check_part_masks(part_masks, latents, pipeline.resolution)
    if true_changes is not None:
        _check_true_changes(true_changes, latents)
    settings = settings or SideEffectSettings()
    device = pipeline.device
    delta = delta.detach().to(device)
    faces = [_face(pipeline, w[None].to(device), delta, class_ids, settings,
                   None if part_masks is None else part_masks[i:i + 1],
                   None if true_changes is None else
                   (true_changes.area[i], true_changes.place[i], true_changes.present[i].float()))
             for i, w in enumerate(latents)]
    along = delta.flatten() / delta.norm().clamp(min=1e-12)
    drift_before = worst_colour_change(pipeline, faces, delta)
    corrected = delta.clone()
    for it in range(settings.iters):
        jacobians, residuals = [], []
        for i, face in enumerate(faces):
            def weighted(x: torch.Tensor, face: _Face = face) -> torch.Tensor:
                return (_rows(pipeline, face, face.latent + x[None]) - face.reference) * face.scale
            jacobian, residual = _jacobian_and_value(weighted, corrected, face.scale != 0)
            jacobians.append(jacobian)
            residuals.append(residual)
            if progress:
                progress(it * len(faces) + i + 1, settings.iters * len(faces))
        J, r = torch.cat(jacobians), torch.cat(residuals)
        gram = J @ J.T
        damping = settings.ridge * gram.diagonal().mean().clamp(min=1e-12)
        step = -J.T @ torch.linalg.solve(gram + damping * torch.eye(len(gram), device=device), r)
        step = step - (step @ along) * along  # the edit keeps its length along δ
        corrected = corrected + step.view_as(corrected)
    drift_after = worst_colour_change(pipeline, faces, corrected)
    report = {"ridge": settings.ridge, "iters": settings.iters, "area_weight": settings.area_weight,
              "faces": len(faces), "part_masks": "given" if part_masks is not None else "segmenter",
              "correction_norm": round(float((corrected - delta).norm()), 4),
              "colour_change_before": round(drift_before, 4), "colour_change_after": round(drift_after, 4)}
    if true_changes is not None:
        report.update(place_weight=settings.place_weight, sizes_and_places="true changes")
    return corrected.cpu(), {"side_effects": report}


def keep_side_effects_at(pipeline, latents: torch.Tensor, delta: torch.Tensor, strength: float,
                         class_ids: Sequence[int], settings: SideEffectSettings | None = None,
                         progress: Callable[[int, int], None] | None = None,
                         part_masks: torch.Tensor | None = None,
                         true_changes: TrueChanges | None = None) -> tuple[torch.Tensor, dict]:
    """``keep_side_effects`` for a vector used at ``strength`` (its default scale): the side effects are those
    of ``strength · δ``, and the corrected δ comes back at strength 1, as vectors store it."""
    corrected, kept = keep_side_effects(pipeline, latents, delta * strength, class_ids, settings, progress,
                                        part_masks, true_changes)
    return corrected / strength, kept
