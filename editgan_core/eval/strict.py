"""Strict edit benchmark: does a shared vector make *its* change, and only it, on faces nothing learned from?

    python -m editgan_core.eval.strict --bundle checkpoints/faces64 [--vectors smile open_mouth] [--n 100]
    python -m editgan_core.eval.strict --bundle checkpoints/faces64 --tuning --vectors NAME --scales 0.6 0.8 1
        # a default strength for NAME: judged at each, suggested by the targets (suggest_strength)

For each vector with a known target (a demo preset, or ``extra.attribute``/``extra.target`` in its file),
faces come from ``seeds.STRICT_HELDOUT`` and only those whose *drawn* value has room to move (at least
``--fraction`` of the range short of the target) are judged. Each face is rendered as drawn and with the
target value (the true edit), both are embedded the same way, and the vector is applied to the first.

- success: the judge reads a move of at least ``--fraction`` of the range towards the target (Wilson 95 %);
- entanglement: the signed mean change of every other editable attribute (fraction of its range);
- colour drift: per part the edit does not redraw, on the pixels it covers both before and after the true
  edit (renderer labels), the largest per-channel move of its mean colour (fraction of 0..255); the edited
  parts' own drift is kept apart (``colour_edited``: an opened mouth shows teeth, its colour may change);
- outside: mean pixel change outside the true edit region;
- ceiling: every figure again for the embedded true target instead of the edit, in a row of its own: a target
  the ceiling misses is out of reach of any edit as faithful as the embedding, as this judge reads it;
- renders: every figure for the renderer's own true edit, judged on the renders themselves (no generator):
  what the judge reads when only the attribute moved, e.g. lower brows under a new fringe. Entanglement
  or drift at this level is the judge's, not the edit's.

The judge is the attribute net (``eval.kid.DEFAULT_ATTRIBUTE_NET``): trained on renders only, never on
generator output or edits, and no edit method optimises against it. Part pixels and the region come from
the renderer's exact label maps, not from the bundle's segmenter that the edits are optimised through.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from tqdm import tqdm

from editgan_core.cli_common import command_parser, open_pipeline, parse_command, require_domain
from editgan_core.editing import REFINE_PART_COLOUR, EditWeights
from editgan_core.embedding_cache import EmbeddingCache
from editgan_core.eval import strict_metrics as sm
from editgan_core.eval.kid import DEFAULT_ATTRIBUTE_NET
from editgan_core.eval.seeds import STRICT_HELDOUT, TUNING, check_disjoint
from editgan_core.models.attribute_net import AttributeNet
from editgan_core.pipeline import EditGANPipeline
from editgan_core.train.presets import PRESETS
from editgan_core.utils import tensor_to_uint8, to_tensor
from editgan_core.vectors import EditVector, load_vector
from editgan_core.vectors.vector import MAX_DEFAULT_SCALE

DEFAULT_FRACTION = 0.25  # a move of a quarter of the attribute's range counts as a success
DEFAULT_EMBED_STEPS = 20  # encoder + a short optimisation: the same for the face and its true target
APPEARANCE = ("skin_tone", "hair_tone", "iris_tone", "face_width", "jaw")  # identity, read by the judge
BATCH = 16

# Targets of issue #24, checked and printed beside each figure.
TARGET_OF_CEILING, TARGET_ABSOLUTE, MAX_ENTANGLEMENT, MAX_COLOUR_DRIFT = 0.85, 0.70, 0.05, 0.02


@dataclass(frozen=True)
class EditTask:
    """What a vector should do: set ``attribute`` to ``target``, touching the parts ``class_ids``."""

    name: str
    attribute: str
    target: float
    class_ids: tuple[int, ...]


def task_of(vector: EditVector, domain: ModuleType) -> EditTask | None:
    """The vector's target: its preset's, or the one stored in its metadata; ``None`` when it has none."""
    spec = next((s for s in PRESETS if s.name == vector.name), None)
    attribute = vector.extra.get("attribute", spec.attribute if spec else None)
    target = vector.extra.get("target", spec.value if spec else None)
    if attribute not in domain.ATTRIBUTE_RANGES or target is None:
        return None
    return EditTask(vector.name, attribute, float(target), tuple(domain.EDIT_CLASSES[attribute]))


@dataclass
class FaceCase:
    """One held-out face: drawn values, render and its true edit (exact labels for both)."""

    seed: int
    attrs: dict[str, float]
    image: np.ndarray
    labels: np.ndarray
    target_image: np.ndarray
    target_labels: np.ndarray


def faces_for(task: EditTask, domain: ModuleType, n: int, fraction: float, resolution: int,
              seeds: range = STRICT_HELDOUT) -> list[FaceCase]:
    """The first ``n`` faces of ``seeds`` with room to move towards the task's target."""
    low, high = domain.ATTRIBUTE_RANGES[task.attribute]
    out = []
    for seed in seeds:
        if len(out) == n:
            break
        attrs = domain.sample_attributes(seed)
        if not sm.has_room(attrs[task.attribute], task.target, low, high, fraction):
            continue
        face = domain.render(attrs, resolution)
        target = domain.render({**attrs, task.attribute: task.target}, resolution)
        out.append(FaceCase(seed, attrs, face.image, face.labels, target.image, target.labels))
    return out


@torch.no_grad()
def render_images(pipeline: EditGANPipeline, latents: torch.Tensor) -> np.ndarray:
    """uint8 images (B, H, W, 3) of W+ latents, in batches, without labels."""
    out = [tensor_to_uint8(pipeline.generator.synthesis(chunk.to(pipeline.device), noise=pipeline.noise).image)
           for chunk in latents.split(BATCH)]
    return np.concatenate(out)


@torch.no_grad()
def judge_images(judge: AttributeNet, images: np.ndarray) -> list[dict[str, float]]:
    """Every target of the judge for each image, in its own units."""
    values = {k: v.numpy() for k, v in judge.predict(to_tensor(images)).items()}
    return [{k: float(v[i]) for k, v in values.items()} for i in range(len(images))]


# An editor maps embedded faces (B, n_latent, style_dim) and their cases to edited latents.
EditorFn = Callable[[torch.Tensor, list[FaceCase]], torch.Tensor]


def vector_editor(vector: EditVector, scale: float | None = None) -> EditorFn:
    step = (vector.default_scale if scale is None else scale) * vector.effective_delta()
    return lambda latents, _cases: latents + step


def refine_editor(pipeline: EditGANPipeline, vector: EditVector, steps: int, scale: float | None = None,
                  **refine_kwargs) -> EditorFn:
    """The vector, then the pipeline's self-supervised refinement, one face at a time."""
    def edit(latents: torch.Tensor, _cases: list[FaceCase]) -> torch.Tensor:
        return torch.cat([pipeline.refine(w[None], [(vector, scale)], steps=steps, **refine_kwargs).latent
                          for w in tqdm(latents, desc=f"refine {vector.name}", unit="face", leave=False)])
    return edit


@dataclass
class Measures:
    """Per-face measures of one set of output images against the embedded originals."""

    success: list[bool] = field(default_factory=list)
    entangled: list[dict[str, float]] = field(default_factory=list)
    colour: list[dict[int, float]] = field(default_factory=list)  # persisting parts the edit does not redraw
    colour_edited: list[dict[int, float]] = field(default_factory=list)  # the edited parts (may change look)
    outside: list[float] = field(default_factory=list)
    identity: list[float] = field(default_factory=list)

    def add(self, task: EditTask, ranges, case: FaceCase, before_img, after_img, before_j, after_j,
            fraction: float) -> None:
        low, high = ranges[task.attribute]
        self.success.append(sm.moved(before_j[task.attribute], after_j[task.attribute], task.target, low, high,
                                     fraction))
        self.entangled.append(sm.entanglement(before_j, after_j, ranges, task.attribute))
        masks = sm.persisting_masks(case.labels, case.target_labels)
        drift = sm.colour_drift(before_img, after_img, masks)
        self.colour.append({c: d for c, d in drift.items() if c not in task.class_ids})
        self.colour_edited.append({c: d for c, d in drift.items() if c in task.class_ids})
        region = sm.true_region(case.labels, case.target_labels, task.class_ids)
        self.outside.append(sm.outside_change(before_img, after_img, region))
        appearance = {n: (0.0, 1.0) for n in APPEARANCE if n in before_j}
        self.identity.append(sm.identity_loss(before_j, after_j, appearance))

    def summary(self) -> dict:
        n, k = len(self.success), int(sum(self.success))
        attrs = sorted({a for e in self.entangled for a in e})
        classes = sorted({c for d in self.colour for c in d})
        edited = sorted({c for d in self.colour_edited for c in d})
        return {
            "n": n, "success": k / n if n else float("nan"), "success_ci": sm.wilson(k, n),
            "entanglement": {a: sm.mean_ci(e[a] for e in self.entangled if a in e) for a in attrs},
            "colour": {c: sm.mean_ci(d[c] for d in self.colour if c in d) for c in classes},
            "colour_edited": {c: sm.mean_ci(d[c] for d in self.colour_edited if c in d) for c in edited},
            "outside": sm.mean_ci(self.outside), "identity_loss": sm.mean_ci(self.identity),
        }


def evaluate(pipeline: EditGANPipeline, judge: AttributeNet, domain: ModuleType, task: EditTask,
             cases: list[FaceCase], editors: dict[str, EditorFn], cache: EmbeddingCache, embed_steps: int,
             fraction: float, images_out: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
    """Summaries per editor, plus ``"ceiling"``: the embedded true target judged the same way, and
    ``"renders"``: the true edit judged on the renders. ``images_out`` receives every editor's output images
    (for KID)."""
    latents, targets = cache.embed_pairs(pipeline, [c.seed for c in cases], task.attribute, task.target,
                                         [c.image for c in cases], [c.target_image for c in cases], embed_steps)
    before_imgs = render_images(pipeline, latents)
    before_j = judge_images(judge, before_imgs)
    outputs = {"ceiling": render_images(pipeline, targets)}
    for name, editor in editors.items():
        outputs[name] = render_images(pipeline, editor(latents, cases).detach().cpu())
    if images_out is not None:
        images_out.update(outputs)
    result = {name: summarise(judge, domain, task, cases, before_imgs, before_j, images, fraction)
              for name, images in outputs.items()}
    renders = np.stack([c.image for c in cases])  # the renderer's own true edit: the judge's floor
    result["renders"] = summarise(judge, domain, task, cases, renders, judge_images(judge, renders),
                                  np.stack([c.target_image for c in cases]), fraction)
    return result


def summarise(judge: AttributeNet, domain: ModuleType, task: EditTask, cases: list[FaceCase], before: np.ndarray,
              before_j: list[dict[str, float]], after: np.ndarray, fraction: float) -> dict:
    """The strict figures of ``after`` against ``before`` (images, and the judge's readings of ``before``)."""
    measures = Measures()
    for i, after_j in enumerate(judge_images(judge, after)):
        measures.add(task, domain.ATTRIBUTE_RANGES, cases[i], before[i], after[i], before_j[i], after_j, fraction)
    return measures.summary()


def worst(entries: dict, keep=lambda _k: True) -> tuple[object, float, float]:
    """(key, mean, half-width) of the entry with the largest |mean|."""
    items = [(k, m, h) for k, (m, h) in entries.items() if keep(k) and np.isfinite(m)]
    return max(items, key=lambda t: abs(t[1])) if items else (None, float("nan"), float("nan"))


def verdict(method: dict, ceiling: dict) -> dict[str, bool]:
    """Issue #24's targets for one vector."""
    success_ok = method["success"] >= TARGET_OF_CEILING * ceiling["success"] and (
        method["success"] >= TARGET_ABSOLUTE or ceiling["success"] < TARGET_ABSOLUTE)
    return {"success": bool(success_ok),
            "entanglement": abs(worst(method["entanglement"])[1]) <= MAX_ENTANGLEMENT,
            "colour": abs(worst(method["colour"])[1]) <= MAX_COLOUR_DRIFT}


def suggest_strength(by_strength: dict[float, dict], ceiling: dict) -> float:
    """The default strength to ship, from a vector's summaries at several strengths (judged on tuning faces).

    A strength that does not make the edit is no default, so the success target comes first, then the number of
    targets met. Among those, a strength whose missed side effects are no worse than the ceiling's (a miss the
    embedded true target shares is no reason to shorten the edit further) is preferred, the strongest of them,
    nearest the full edit; where none is, the one whose worst side effect exceeds its limit least."""
    def excess(s: dict) -> float:  # worst side effect over its limit: the target, or the ceiling's own if larger
        return max(abs(worst(s[key])[1]) / max(limit, abs(worst(ceiling[key])[1]))
                   for key, limit in (("entanglement", MAX_ENTANGLEMENT), ("colour", MAX_COLOUR_DRIFT)))

    def rank(item: tuple[float, dict]) -> tuple[bool, int, bool, float]:
        strength, s = item
        ok, over = verdict(s, ceiling), excess(s)
        return ok["success"], sum(ok.values()), over <= 1.0, strength if over <= 1.0 else -over
    return max(by_strength.items(), key=rank)[0]


def format_row(name: str, editor: str, s: dict, c: dict, class_names: Sequence[str]) -> str:
    lo, hi = s["success_ci"]
    e_name, e_mean, e_half = worst(s["entanglement"])
    ce = c["entanglement"].get(e_name, (float("nan"), 0.0))[0]
    k, d_mean, d_half = worst(s["colour"])
    cd = c["colour"].get(k, (float("nan"), 0.0))[0]
    ok = verdict(s, c)
    flags = "".join("+" if ok[key] else "-" for key in ("success", "entanglement", "colour"))
    part = class_names[k] if k is not None else "-"
    return (f"{name:<16} {editor:<10} {s['n']:>4} {100 * s['success']:5.1f} [{100 * lo:4.1f},{100 * hi:5.1f}] "
            f"{100 * c['success']:5.1f} | {e_name or '-':<14} {e_mean:+.3f}±{e_half:.3f} ({ce:+.3f}) | "
            f"{part:<14} {100 * d_mean:4.1f}±{100 * d_half:3.1f}% ({100 * cd:3.1f}) | "
            f"{s['outside'][0]:.4f} ({c['outside'][0]:.4f}) | {flags}")


# Refinement without parts of the pipeline's default (keep the applied step, keep persisting parts' colours); like
# the default, without the pixel segmenter's term.
REFINE_VARIANTS = {
    "-paper": {"keep_step": False, "weights": EditWeights(image_ce=0.0)},  # the paper's objective, the earlier default
    "-keep": {"keep_step": True, "weights": EditWeights(image_ce=0.0)},
    "-colour": {"keep_step": False, "weights": EditWeights(part_colour=REFINE_PART_COLOUR, image_ce=0.0)},
}

HEADER = ("vector           editor        n  succ% [95% CI]     ceil% | worst other attribute (ceiling)    | "
          "worst part colour drift (ceiling) | outside (ceiling) | targets s/e/c")


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, bundle=True, device=True)
    p.add_argument("--vectors", nargs="+", help="vector names (default: every vector with a known target)")
    p.add_argument("--vector-dir", type=Path, help="read vectors here instead of the bundle's presets")
    p.add_argument("--n", type=int, default=100, help="faces with room to move, per vector")
    p.add_argument("--tuning", action="store_true",
                   help="judge on the tuning seeds (seeds.TUNING) instead of the held-out ones: for choosing settings")
    p.add_argument("--fraction", type=float, default=DEFAULT_FRACTION, help="move counted as success (of range)")
    p.add_argument("--embed-steps", type=int, default=DEFAULT_EMBED_STEPS)
    p.add_argument("--refine", type=int, nargs="*", default=[], help="also judge refinement with these steps")
    p.add_argument("--refine-n", type=int, default=30, help="faces the (slow) refinement is judged on")
    p.add_argument("--refine-variants", action="store_true",
                   help="also judge refinement without the default's parts (REFINE_VARIANTS)")
    p.add_argument("--keep-parts", action="store_true",
                   help="also judge each vector corrected on each face for its side effects (refine(keep_parts=True)), "
                        "alone and before each --refine")
    p.add_argument("--scales", type=float, nargs="+",
                   help="also judge each vector at these strengths and suggest a default (suggest_strength); "
                        "choose it on --tuning faces, then confirm on the held-out ones")
    p.add_argument("--judge", type=Path, default=DEFAULT_ATTRIBUTE_NET)
    p.add_argument("--cache", type=Path, default=Path("runs/strict_cache"), help="embedding cache folder")
    p.add_argument("--json", type=Path, help="write every summary here")
    args = parse_command(p, argv)
    if args.scales and not all(math.isfinite(x) and 0 < x <= MAX_DEFAULT_SCALE for x in args.scales):
        p.error(f"--scales must be strengths in (0, {MAX_DEFAULT_SCALE:g}]: {args.scales}")
    check_disjoint()
    pipeline = open_pipeline(args)
    domain = require_domain(p, pipeline.bundle, "the strict benchmark renders faces with their true edits")
    judge = AttributeNet.load(args.judge).eval()
    folder = args.vector_dir or pipeline.bundle.vectors_dir
    vectors = [load_vector(f, pipeline.bundle.id) for f in sorted(folder.glob("*.safetensors"))]
    vectors = [v for v in vectors if not args.vectors or v.name in args.vectors]
    cache = EmbeddingCache(args.cache / f"{pipeline.bundle.id}_embed{args.embed_steps}.pt")
    class_names = [c.name for c in pipeline.bundle.classes]
    seeds = TUNING if args.tuning else STRICT_HELDOUT
    scale_rows = {f"x{scale:g}": scale for scale in args.scales or []}  # each extra strength's row
    print(f"bundle={pipeline.bundle.id} fraction={args.fraction} embed_steps={args.embed_steps} "
          f"{'tuning' if args.tuning else 'held-out'} seeds {seeds.start}..; judge={args.judge.name}\n{HEADER}")
    report = {}
    for vector in vectors:
        task = task_of(vector, domain)
        if task is None:
            print(f"{vector.name}: no known target attribute, skipped")
            continue
        cases = faces_for(task, domain, args.n, args.fraction, pipeline.resolution, seeds)
        editors = {"vector": vector_editor(vector)}
        editors.update({row: vector_editor(vector, scale) for row, scale in scale_rows.items()})
        if args.keep_parts:
            editors["keep"] = refine_editor(pipeline, vector, 0, keep_parts=True)
        result = evaluate(pipeline, judge, domain, task, cases, editors, cache, args.embed_steps, args.fraction)
        for steps in args.refine:
            sub = cases[:args.refine_n]
            editors = {"vector": vector_editor(vector), f"refine{steps}": refine_editor(pipeline, vector, steps)}
            if args.keep_parts:
                editors[f"refine{steps}+keep"] = refine_editor(pipeline, vector, steps, keep_parts=True)
            if args.refine_variants:
                editors.update({f"refine{steps}{suffix}": refine_editor(pipeline, vector, steps, **kwargs)
                                for suffix, kwargs in REFINE_VARIANTS.items()})
            refined = evaluate(pipeline, judge, domain, task, sub, editors, cache, args.embed_steps, args.fraction)
            result.update({f"{k}@{len(sub)}": v for k, v in refined.items()})
        report[vector.name] = result
        for editor, summary in result.items():  # the ceiling's own row shows which targets the true edit misses
            ceiling = result["ceiling@" + editor.split("@")[1]] if "@" in editor else result["ceiling"]
            print(format_row(vector.name, editor, summary, ceiling, class_names), flush=True)
        if scale_rows:
            by_strength = {vector.default_scale: result["vector"],
                           **{scale: result[row] for row, scale in scale_rows.items()}}
            print(f"{vector.name}: suggested default strength {suggest_strength(by_strength, result['ceiling']):g} "
                  f"(now {vector.default_scale:g})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
