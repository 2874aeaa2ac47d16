"""Learn a preset's shared editing vector from the edits a user added to it (any bundle with a segmenter).

    python -m editgan_core.train.presets --bundle B --from-pairs [--preset NAME ...]

Each pair is a picture's latent and the label map painted on it (``editgan_core.preset_pairs``);
``learn_shared_edit`` finds one δw+ that makes every painted change at once, which is what makes it
reusable on new pictures. The vector goes into the bundle's vector library under the preset's name,
replacing an earlier one learnt from pairs but never a vector saved or shipped otherwise.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from editgan_core.editing import infer_edit_classes
from editgan_core.optim import StepInfo
from editgan_core.pipeline import EditGANPipeline
from editgan_core.preset_pairs import PairError, PresetPair, list_presets, load_pairs, pairs_root, preset_folder
from editgan_core.side_effects import SideEffectSettings, keep_side_effects_at
from editgan_core.vector_strength import calibrate_strength
from editgan_core.vectors import EditVector, VectorError, VectorNotFoundError, open_library, utc_now

SOURCE = "preset-pairs"  # EditVector.source of vectors learnt here: the ones a new learning may replace
MIN_PAIRS = 3  # fewer is one edit averaged with noise; 8 or more generalise clearly better


@dataclass
class PresetResult:
    vector: EditVector
    used: int  # pairs learnt from
    skipped: list[str]  # pairs left out, with the reason


def usable_pairs(pipeline: EditGANPipeline, pairs: Sequence[PresetPair]
                 ) -> tuple[list[PresetPair], list[int], list[str]]:
    """The pairs whose painting still differs from the model's segmentation, the classes they edit, and the
    ones left out (a retrained segmenter may now predict what was painted)."""
    used, classes, skipped = [], set(), []
    for pair in pairs:
        predicted = pipeline.render(pair.latent).labels
        if not (predicted != pair.labels).any():
            skipped.append(f"{pair.name}: the model's segmentation already matches the painting")
            continue
        used.append(pair)
        classes.update(infer_edit_classes(predicted.astype(np.int64), pair.labels.astype(np.int64),
                                          pipeline.bundle.edit_groups))
    return used, sorted(classes), skipped


def learn_preset_from_pairs(pipeline: EditGANPipeline, name: str, steps: int | None = None,
                            min_pairs: int = MIN_PAIRS, default_scale: float | None = None, description: str = "",
                            callback: Callable[[StepInfo], None] | None = None,
                            should_stop: Callable[[], bool] | None = None,
                            side_effects: SideEffectSettings | None = None) -> PresetResult:
    """One shared vector from preset ``name``'s pairs (not saved: see ``save_preset_vector``).

    ``default_scale`` None: the strength that best redraws the paintings on their own pictures
    (``vector_strength``). With ``side_effects`` the vector is then corrected at that strength so the parts
    it should not touch keep their colour and size (``side_effects``); the callback sees those steps after
    the optimisation's.
    """
    if not pipeline.can_segment:
        raise PairError(f"model '{pipeline.bundle.id}' has no segmentation branch; presets learn from painted "
                        "label maps, so train or import a segmenter first")
    folder = preset_folder(pipeline.bundle, name)
    pairs = load_pairs(pipeline.bundle, name, pipeline.latent_shape, pipeline.resolution)
    if not pairs:
        raise PairError(f"preset '{folder.name}' has no pairs yet: in the studio's edit step, paint a change and "
                        "choose \"Add this edit to a preset\"")
    used, classes, skipped = usable_pairs(pipeline, pairs)
    if len(used) < min_pairs:
        why = f" ({len(skipped)} left out: {skipped[0]})" if skipped else ""
        raise PairError(f"preset '{folder.name}' has {len(used)} usable pair(s){why}; at least {min_pairs} are "
                        "needed for a shared vector (8 or more make it generalise)")
    result = pipeline.learn_shared_edit([p.latent for p in used], [p.labels for p in used], classes, steps=steps,
                                        callback=callback, should_stop=should_stop)
    latents = torch.cat([pipeline.check_latent(p.latent) for p in used]).cpu()
    delta, extra = result.delta, {"pairs": [p.name for p in used], "steps": result.steps_done,
                                  "stopped": result.stopped, **result.metrics}
    if default_scale is None:
        default_scale, extra["strength_iou"] = calibrate_strength(pipeline, latents, [p.labels for p in used],
                                                                  result.class_ids, delta)
    if side_effects is not None and not (should_stop and should_stop()):
        def progress(done: int, total: int) -> None:
            if callback:
                callback(StepInfo(result.steps_done + done, result.steps_done + total, result.metrics["loss_best"],
                                  {}, result.metrics["loss_best"], delta))
        delta, kept = keep_side_effects_at(pipeline, latents, delta, default_scale, result.class_ids, side_effects,
                                           progress)
        extra.update(kept)
    vector = EditVector(delta=delta, name=folder.name,
                        description=description or f"learnt from {len(used)} painted edits",
                        bundle_id=pipeline.bundle.id, class_ids=result.class_ids, default_scale=default_scale,
                        created=utc_now(), source=SOURCE, extra=extra)
    return PresetResult(vector, len(used), skipped)


def save_preset_vector(pipeline: EditGANPipeline, vector: EditVector) -> EditVector:
    """Store the vector in the bundle's library (the studio's gallery shows it with a thumbnail).

    An earlier vector learnt from pairs is replaced; a preset shipped with the model or a vector the user
    saved under that name is never overwritten.
    """
    library = open_library(pipeline.bundle.id, pipeline.latent_shape, pipeline.bundle.vectors_dir)
    try:
        existing = library.get(vector.name)
    except VectorNotFoundError:
        existing = None
    if existing is not None and (library.is_preset(vector.name) or existing.source != SOURCE):
        kind = "a preset shipped with the model" if library.is_preset(vector.name) else "a vector saved otherwise"
        raise PairError(f"'{existing.name}' is already {kind}; add the edits to a preset of another name")
    try:
        return library.save(vector, overwrite=existing is not None)
    except VectorError as exc:
        raise PairError(str(exc)) from exc


def learn_from_pairs_cli(pipeline: EditGANPipeline, names: Sequence[str] | None, steps: int | None,
                         min_pairs: int, default_scale: float | None,
                         side_effects: SideEffectSettings | None = None) -> int:
    """``train.presets --from-pairs``: learn and save every named preset (default: all with pairs); exit status."""
    available = list_presets(pipeline.bundle)
    names = list(names or available)
    if not names:
        print(f"error: model '{pipeline.bundle.id}' has no preset pairs yet (looked in "
              f"{pairs_root(pipeline.bundle)}); add edits to a preset in the studio's edit step", file=sys.stderr)
        return 2
    failed = 0
    for name in tqdm(names, desc="presets", unit="preset"):
        start = time.perf_counter()
        try:
            result = learn_preset_from_pairs(pipeline, name, steps, min_pairs, default_scale,
                                             side_effects=side_effects)
            saved = save_preset_vector(pipeline, result.vector)
        except PairError as exc:
            tqdm.write(f"error: {exc}")
            failed += 1
            continue
        for line in result.skipped:
            tqdm.write(f"  left out {line}")
        extra = saved.extra
        tqdm.write(f"{saved.name}: {result.used} pairs, {extra['steps']} steps in {time.perf_counter() - start:.1f}s, "
                   f"region IoU {extra['region_iou']:.3f}, change outside {extra['change_outside']:.4f}, "
                   f"default scale {saved.default_scale:g} -> vector library of '{pipeline.bundle.id}'")
    return 1 if failed else 0
