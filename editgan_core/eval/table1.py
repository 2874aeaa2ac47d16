"""The EditGAN paper's Table 1 on the demo domain: vector (alone, per-face side effects kept, refined), per-image
optimisation, InterFaceGAN.

    python -m editgan_core.eval.table1 --bundle checkpoints/faces64 [--preset smile] [--n 30]

All rows edit the same held-out faces (``eval.strict``: seeds.STRICT_HELDOUT, faces with room to move,
embedded alike) towards the preset's target. Columns:
- accuracy: strict success (the judge reads a move of ``--fraction`` of the range), Wilson 95 % interval;
- KID (x1e-3) of the edited images against the renders of the same faces with the true target, in the
  judge's feature space (``eval.kid``; with tens of images it is noisy: mean and std over random half-sets);
- identity: 1 - mean change of skin, hair and iris tone, face width and jaw, as read by the judge;
- annotations: painted label maps the method needs (renderer pairs for a `pairs` preset, the judge's labels for
  InterFaceGAN).
The InterFaceGAN row uses the ``judge_<preset>`` vector that ``eval.interfacegan`` saves in the bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from editgan_core.cli_common import command_parser, open_pipeline, parse_command, require_domain
from editgan_core.embedding_cache import EmbeddingCache
from editgan_core.eval.kid import DEFAULT_ATTRIBUTE_NET, kid
from editgan_core.eval.seeds import check_disjoint
from editgan_core.eval.strict import (
    DEFAULT_EMBED_STEPS,
    DEFAULT_FRACTION,
    EditorFn,
    FaceCase,
    evaluate,
    faces_for,
    refine_editor,
    task_of,
    vector_editor,
)
from editgan_core.model_card import TRUE_TARGET_METHODS
from editgan_core.models.attribute_net import AttributeNet
from editgan_core.pipeline import EditGANPipeline
from editgan_core.train.presets import PRESETS, painted_target
from editgan_core.utils import to_tensor
from editgan_core.vectors import EditVector, load_vector


def per_image_editor(pipeline: EditGANPipeline, domain, attribute: str, target: float, steps: int) -> EditorFn:
    """EditGAN without a vector: paint each face's true target and optimise δ for that face alone."""
    def edit(latents: torch.Tensor, cases: list[FaceCase]) -> torch.Tensor:
        out = []
        for latent, case in tqdm(zip(latents, cases, strict=True), total=len(cases), desc="per-image edits",
                                 unit="face", leave=False):
            predicted = pipeline.render(latent[None]).labels
            painted = painted_target(pipeline, domain, case.attrs, attribute, target, predicted)
            out.append(pipeline.learn_edit(latent[None], painted, steps=steps).latent if (painted != predicted).any()
                       else latent[None])
        return torch.cat(out)
    return edit


@torch.no_grad()
def kid_against(judge: AttributeNet, images: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    feats = [judge.features(to_tensor(x)).numpy() for x in (images, reference)]
    result = kid(*feats, subsets=50, subset_size=max(2, len(images) // 2))  # half-sets: a spread to report
    return result.mean * 1e3, result.std * 1e3


def vector_annotations(vector: EditVector) -> str:
    """What the vector was learned from: painted maps, or renderer pairs (a face and its true target)."""
    faces = len(vector.extra.get("seeds", [])) or "?"
    if vector.extra.get("method") in TRUE_TARGET_METHODS:
        return f"0 painted; {faces} renderer pairs (true targets), once"
    return f"{faces} painted maps, once"


def main(argv: list[str] | None = None) -> None:
    p = command_parser(__doc__, bundle=True, device=True)
    p.add_argument("--preset", default="smile", choices=[s.name for s in PRESETS])
    p.add_argument("--n", type=int, default=30, help="held-out faces (every row edits the same ones)")
    p.add_argument("--fraction", type=float, default=DEFAULT_FRACTION)
    p.add_argument("--embed-steps", type=int, default=DEFAULT_EMBED_STEPS)
    p.add_argument("--refine-steps", type=int, default=30)
    p.add_argument("--edit-steps", type=int, help="per-image optimisation steps (default: the bundle's)")
    p.add_argument("--judge", type=Path, default=DEFAULT_ATTRIBUTE_NET)
    p.add_argument("--cache", type=Path, default=Path("runs/strict_cache"))
    args = parse_command(p, argv)
    check_disjoint()
    pipeline = open_pipeline(args)
    domain = require_domain(p, pipeline.bundle, "Table 1 renders faces with their true edits")
    judge = AttributeNet.load(args.judge).eval()
    folder = pipeline.bundle.vectors_dir
    vector = load_vector(folder / f"{args.preset}.safetensors", pipeline.bundle.id)
    judge_path = folder / f"judge_{args.preset}.safetensors"
    if not judge_path.is_file():
        p.error(f"{judge_path} is missing: run python -m editgan_core.eval.interfacegan --bundle {args.bundle}")
    direction = load_vector(judge_path, pipeline.bundle.id)
    task = task_of(vector, domain)
    cases = faces_for(task, domain, args.n, args.fraction, pipeline.resolution)
    edit_steps = args.edit_steps or pipeline.defaults.edit_steps
    learned_from = vector_annotations(vector)
    rows = {
        "EditGAN (vector)": (vector_editor(vector), learned_from),
        "EditGAN + other parts kept (per face)": (refine_editor(pipeline, vector, 0, keep_parts=True), learned_from),
        f"EditGAN + {args.refine_steps} refinement steps": (refine_editor(pipeline, vector, args.refine_steps),
                                                            learned_from),
        f"EditGAN optimisation per image ({edit_steps} steps)": (
            per_image_editor(pipeline, domain, task.attribute, task.target, edit_steps), "1 painted map per image"),
        "InterFaceGAN (judge direction)": (vector_editor(direction),
                                           f"0 painted; {direction.extra.get('fit_samples', '?')} judge labels"),
    }
    images: dict[str, np.ndarray] = {}
    cache = EmbeddingCache(args.cache / f"{pipeline.bundle.id}_embed{args.embed_steps}.pt")
    result = evaluate(pipeline, judge, domain, task, cases, {k: v[0] for k, v in rows.items()}, cache,
                      args.embed_steps, args.fraction, images)
    reference = np.stack([c.target_image for c in cases])
    print(f"Table 1 on {pipeline.bundle.id}: preset {args.preset} ({task.attribute} -> {task.target:g}), {len(cases)} "
          f"held-out faces, success = move >= {args.fraction} of the range, embed_steps={args.embed_steps}\n")
    print("| method | accuracy % [95% CI] | KID x1e-3 (std) | identity | annotations |")
    print("|---|---|---|---|---|")
    needs = {name: row[1] for name, row in rows.items()}
    for name, key in [*((n, n) for n in rows), ("ceiling: embedded true target", "ceiling")]:
        s = result[key]
        k_mean, k_std = kid_against(judge, images[key], reference)
        lo, hi = s["success_ci"]
        print(f"| {name} | {100 * s['success']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | {k_mean:.2f} ({k_std:.2f}) | "
              f"{1 - s['identity_loss'][0]:.3f} | {needs.get(name, '-')} |")


if __name__ == "__main__":
    main()
