"""Learn the demo bundle's preset editing vectors from scripted mask edits on rendered faces.

    python -m editgan_core.train.presets --bundle checkpoints/faces64 [--faces 32] [--steps 200]

For each preset, faces are rendered twice: as drawn and with one attribute changed (a bigger
smile, eyes looking left, ...). The first is embedded into W+, its predicted segmentation gets the
second render's labels on the changed pixels (what a user would paint), and ``learn_shared_edit``
finds one δw+ that makes the painted change on all the faces at once: the preset stored in the bundle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from editgan_core.cli_common import command_parser, open_pipeline, parse_command, require_domain
from editgan_core.eval.seeds import LEARNED_FROM
from editgan_core.pipeline import EditGANPipeline
from editgan_core.vectors import EditVector, save_vector, utc_now

PRESET_SEEDS = LEARNED_FROM["preset painting (train.presets)"]  # the seed table lives in eval.seeds
DEFAULT_FACES = 32  # faces a preset is learned on together
DEFAULT_STEPS = 200  # steps of the shared optimisation


@dataclass(frozen=True)
class PresetSpec:
    name: str
    description: str
    attribute: str
    value: float
    accept: Callable[[dict], bool]  # faces on which the change is clearly visible
    default_scale: float = 1.0


PRESETS = (
    PresetSpec("smile", "Broad smile: mouth corners up", "smile", 1.0,
               lambda a: a["smile"] < 0.0 and a["mouth_open"] < 0.1),
    PresetSpec("open_mouth", "Open the mouth, teeth visible", "mouth_open", 0.9, lambda a: a["mouth_open"] < 0.05),
    PresetSpec("open_eyes", "Open the eyes wide", "eye_open", 1.0, lambda a: a["eye_open"] < 0.55),
    PresetSpec("look_left", "Look to the image's left", "gaze_x", -1.0, lambda a: abs(a["gaze_x"]) < 0.25),
    PresetSpec("look_right", "Look to the image's right", "gaze_x", 1.0, lambda a: abs(a["gaze_x"]) < 0.25),
    PresetSpec("fuller_hair", "Fuller hair around the head", "hair_volume", 1.0, lambda a: a["hair_volume"] < 0.4),
    PresetSpec("add_fringe", "Add a fringe (bangs)", "fringe", 1.0, lambda a: a["fringe"] < 0.05),
    PresetSpec("raise_eyebrows", "Raise the eyebrows", "eyebrow_height", 1.0, lambda a: a["eyebrow_height"] < 0.4),
)


def scripted_edit(pipeline: EditGANPipeline, domain, seed: int, spec: PresetSpec, embed_steps: int):
    """(latent, painted label map, class ids, whether the painting changes the predicted labels) for one
    face: what a user would have painted."""
    attrs = domain.sample_attributes(seed)
    before = domain.render(attrs, pipeline.resolution)
    after = domain.render({**attrs, spec.attribute: spec.value}, pipeline.resolution)
    latent = pipeline.embed(before.image, steps=embed_steps).latent
    predicted = pipeline.render(latent).labels
    classes = list(domain.EDIT_CLASSES[spec.attribute])
    # the edited parts as a whole, as a user paints them: the new shape, the old one painted over
    edit = (before.labels != after.labels) | np.isin(before.labels, classes) | np.isin(after.labels, classes)
    painted = predicted.copy()
    painted[edit] = after.labels[edit]
    return latent, painted, classes, bool((painted != predicted).any())


def learn_preset(pipeline: EditGANPipeline, domain, spec: PresetSpec, faces: int, steps: int, embed_steps: int,
                 seeds=PRESET_SEEDS) -> EditVector:
    latents, painted, used = [], [], []
    for seed in seeds:
        if len(used) == faces:
            break
        if not spec.accept(domain.sample_attributes(seed)):
            continue
        latent, target, classes, changed = scripted_edit(pipeline, domain, seed, spec, embed_steps)
        if not changed:
            continue  # the change is invisible at this resolution or already predicted: no edit to learn
        latents.append(latent)
        painted.append(target)
        used.append(seed)
    if not latents:
        raise RuntimeError(f"no face in the seed range suits preset {spec.name}")
    result = pipeline.learn_shared_edit(latents, painted, classes, steps=steps)
    return EditVector(delta=result.delta, name=spec.name, description=spec.description,
                      bundle_id=pipeline.bundle.id, class_ids=result.class_ids,
                      default_scale=spec.default_scale, created=utc_now(), source="preset",
                      extra={"seeds": used, "steps": steps, "embed_steps": embed_steps, **result.metrics})


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, bundle=True, device=True)
    p.add_argument("--only", nargs="+", choices=[s.name for s in PRESETS], help="learn only these presets")
    p.add_argument("--faces", type=int, default=DEFAULT_FACES, help="faces a preset is learned on (together)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="steps of the shared optimisation")
    p.add_argument("--embed-steps", type=int, default=100)
    args = parse_command(p, argv)
    pipeline = open_pipeline(args)
    domain = require_domain(p, pipeline.bundle, "presets are scripted on a procedural domain")
    specs = [s for s in PRESETS if not args.only or s.name in args.only]
    for spec in tqdm(specs, desc="presets", unit="preset"):
        start = time.perf_counter()
        vector = learn_preset(pipeline, domain, spec, args.faces, args.steps, args.embed_steps)
        path = save_vector(vector, pipeline.bundle.vectors_dir / f"{spec.name}.safetensors")
        tqdm.write(f"{spec.name}: {time.perf_counter() - start:.1f}s, region IoU {vector.extra['region_iou']:.3f}, "
                   f"change outside {vector.extra['change_outside']:.4f} -> {path}")
    pipeline.bundle.write_model_card()  # the card lists the presets


if __name__ == "__main__":
    main()
