"""``python -m editgan_core bundle ...``: create a bundle from any StyleGAN2 checkpoint and grow it.

    python -m editgan_core bundle create --generator ffhq.pkl --template faces --out checkpoints/ffhq \\
        --title "FFHQ faces" --license "..." --source-url https://...
    python -m editgan_core bundle add-encoder --bundle checkpoints/ffhq runs/enc/encoder.safetensors
    python -m editgan_core bundle add-segmenter --bundle checkpoints/ffhq segmenter.safetensors
    python -m editgan_core bundle add-presets --bundle checkpoints/ffhq smile.npy --classes upper_lip lower_lip
    python -m editgan_core bundle add-discriminator --bundle checkpoints/ffhq discriminator.safetensors
    python -m editgan_core bundle info --bundle checkpoints/ffhq
    python -m editgan_core bundle card --bundle checkpoints/ffhq      # rewrite README.md from the manifest
    python -m editgan_core bundle templates                           # the shipped class lists
    python -m editgan_core bundle push --bundle checkpoints/ffhq --repo you/ffhq-editgan [--private]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from editgan_core import bundle_build
from editgan_core.bundle import Bundle, BundleError
from editgan_core.bundle_classes import list_templates, read_class_file, template_path
from editgan_core.hub import push_bundle
from editgan_core.model_card import capabilities_of, display_path, read_presets


def _int_or_name(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bundle`` command group to the top-level parser's subcommands."""
    group = sub.add_parser("bundle", help="create a model bundle from a StyleGAN2 checkpoint, or grow one",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = group.add_subparsers(dest="bundle_command", required=True)

    create = cmds.add_parser("create", help="a new bundle from a generator checkpoint and a class list")
    create.add_argument("--generator", required=True, help="generator file: NVlabs .pkl, rosinality .pt, safetensors")
    classes = create.add_mutually_exclusive_group(required=True)
    classes.add_argument("--classes", type=Path, help="classes file (JSON, or YAML with PyYAML installed)")
    classes.add_argument("--template", help=f"a shipped class list: {', '.join(list_templates())}")
    create.add_argument("--out", type=Path, required=True, help="bundle folder, e.g. checkpoints/NAME")
    create.add_argument("--id", help="bundle id (default: the folder name)")
    create.add_argument("--title", help="name shown in the studio's model picker")
    create.add_argument("--license", help="the source checkpoint's licence, recorded in the model card")
    create.add_argument("--source-url", help="where the checkpoint came from, recorded in the model card")
    create.add_argument("--samples", type=int, default=6, help="samples in the card's preview picture (0: none)")
    create.add_argument("--force", action="store_true", help="replace an existing bundle folder")

    for name, what in (("add-encoder", "an encoder (Encoder.save .safetensors)"),
                       ("add-discriminator", "a discriminator (.safetensors, or a .pt with a 'd' state dict)")):
        cmd = cmds.add_parser(name, help=f"add or replace {what}")
        cmd.add_argument("--bundle", required=True)
        cmd.add_argument("file", type=Path)
        cmd.add_argument("--force", action="store_true", help="replace the bundle's current one")

    seg = cmds.add_parser("add-segmenter", help="add or replace the segmentation branch")
    seg.add_argument("--bundle", required=True)
    seg.add_argument("files", type=Path, nargs="+",
                     help="one .safetensors from train.segmenter, or the official EditGAN ensemble's member files")
    seg.add_argument("--annotations", type=int, help="how many annotated images it was trained on (for the card)")
    seg.add_argument("--note", help="free text for the model card")
    seg.add_argument("--force", action="store_true", help="replace the bundle's current one")

    presets = cmds.add_parser("add-presets", help="add preset vectors (.safetensors vectors or official .npy)")
    presets.add_argument("--bundle", required=True)
    presets.add_argument("files", type=Path, nargs="+")
    presets.add_argument("--name", help="preset name (one file only; default: the vector's own or the file name)")
    presets.add_argument("--classes", nargs="+", type=_int_or_name, help="class ids or names the vector edits")
    presets.add_argument("--scale", type=float, help="default strength")
    presets.add_argument("--description")
    presets.add_argument("--force", action="store_true", help="replace presets of the same name")

    calibrate = cmds.add_parser("calibrate", help="calibrate the fidelity report's out-of-domain threshold on the "
                                                  "model's renders and store it in the manifest")
    calibrate.add_argument("--bundle", required=True)
    calibrate.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")

    for name, text in (("info", "what a bundle holds and can do"), ("card", "rewrite the bundle's README.md")):
        cmd = cmds.add_parser(name, help=text)
        cmd.add_argument("--bundle", required=True)
        if name == "info":
            cmd.add_argument("--json", action="store_true", help="machine-readable")
    cmds.add_parser("templates", help="list the shipped class templates")

    push = cmds.add_parser("push", help="upload a bundle to a Hugging Face Hub model repo (token: HF_TOKEN)")
    push.add_argument("--bundle", required=True, help="local bundle folder or name")
    push.add_argument("--repo", required=True, help="owner/name, or owner/name@branch; created if missing")
    push.add_argument("--private", action="store_true", help="create the repo private (an existing repo is kept as is)")
    push.add_argument("--message", help="commit message")


def _create(args: argparse.Namespace) -> str:
    spec = read_class_file(args.classes if args.classes else template_path(args.template))
    bundle = bundle_build.create_bundle(args.generator, spec, args.out, bundle_id=args.id, title=args.title,
                                        license_text=args.license, source_url=args.source_url, force=args.force,
                                        samples=args.samples)
    return f"wrote {bundle.root} ({bundle.resolution} px, {len(bundle.classes)} classes) and its README.md"


def info(bundle: Bundle) -> dict:
    """Manifest summary plus capabilities: what ``bundle info`` prints."""
    vectors, unreadable = read_presets(bundle.vectors_dir, bundle.id)
    caps = capabilities_of(bundle.manifest, len(vectors), display_path(bundle.root))
    return {"path": str(bundle.root), "id": bundle.id, "title": bundle.title, "resolution": bundle.resolution,
            "latent_shape": bundle.manifest.get("latent_shape"), "classes": [c.name for c in bundle.classes],
            "edit_groups": sorted(bundle.edit_groups), "presets": [v.name for v in vectors],
            "unreadable_presets": unreadable,
            "components": {k: bundle.manifest.get(k) for k in ("generator", "encoder", "segmenter", "discriminator")},
            "source": bundle.manifest.get("source"), "capabilities": caps.as_dict()}


def _info_text(data: dict) -> str:
    shape = data["latent_shape"] or ["?", "?"]
    lines = [f"{data['path']}: {data['title']} [{data['id']}]",
             f"  {data['resolution']} px, W+ {shape[0]} x {shape[1]}, {len(data['classes'])} classes, "
             f"{len(data['edit_groups'])} edit groups, {len(data['presets'])} presets"]
    for name, entry in data["components"].items():
        lines.append(f"  {name:<13} {entry['file'] if entry else '-'}")
    lines += [f"  embedding:    {data['capabilities']['embedding']}",
              *[f"  note: {n}" for n in data["capabilities"]["notes"]]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run one ``bundle`` subcommand; errors are printed for the user, exit status 1."""
    cmd = args.bundle_command
    try:
        if cmd == "create":
            message = _create(args)
        elif cmd == "templates":
            message = "\n".join(f"{name}: {path}" for name, path in list_templates().items())
        elif cmd == "push":
            url = push_bundle(args.bundle, args.repo, private=args.private, message=args.message)
            message = f"uploaded {args.bundle} to {args.repo}: {url}"
        elif cmd == "calibrate":
            from editgan_core.fidelity import calibrate_bundle  # loads the models: only for this command

            message = calibrate_bundle(args.bundle, args.device)
        elif cmd in ("info", "card"):
            bundle = Bundle.load(args.bundle, hub=cmd == "info")  # a card is rewritten in place: local only
            if cmd == "card":
                message = f"wrote {bundle.write_model_card()}"
            else:
                data = info(bundle)
                message = json.dumps(data, indent=2) if args.json else _info_text(data)
        else:
            message = _grow(cmd, args)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0


def _grow(cmd: str, args: argparse.Namespace) -> str:
    if cmd == "add-encoder":
        bundle = bundle_build.add_encoder(args.bundle, args.file, force=args.force)
    elif cmd == "add-discriminator":
        bundle = bundle_build.add_discriminator(args.bundle, args.file, force=args.force)
    elif cmd == "add-segmenter":
        bundle = bundle_build.add_segmenter(args.bundle, args.files, force=args.force, annotations=args.annotations,
                                            note=args.note)
    else:
        options = bundle_build.PresetOptions(args.name, tuple(args.classes) if args.classes else None, args.scale,
                                             args.description)
        bundle = bundle_build.add_presets(args.bundle, args.files, force=args.force, options=options)
    return f"updated {bundle.root}: {bundle.manifest['history'][-1]['event']}"
