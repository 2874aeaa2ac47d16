"""``editgan`` (and ``python -m editgan_core``): one command line over the project's commands.

    editgan apply --bundle B --vector smile=1 IN_DIR OUT_DIR      # batch editing (editgan_core.cli)
    editgan bundle create|add-...|info|card|push ...               # model bundles (editgan_core.bundle_cli)
    editgan train-gan|train-encoder|train-segmenter|train-presets|train-attributes ...
    editgan bench ops|render ...                                   # speed benchmarks
    editgan eval edit|embedding|kid ...                            # quality evaluations
    editgan lpips --download-lpips DIR                             # LPIPS weights for an offline machine
    editgan dataset --bundle B --n 1000 --out DIR                  # labelled images (editgan_core.dataset)

Each subcommand is the module's own ``main`` with the remaining arguments (``editgan train-gan --help``
shows its options), so ``editgan X`` and ``python -m editgan_core.<module>`` never disagree.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# command -> (module whose main runs it, one line of help); apply and bundle share editgan_core.cli's parser
COMMANDS: dict[str, tuple[str, str]] = {
    "apply": ("editgan_core.cli", "embed or read every input of a folder, edit it with vectors, save"),
    "bundle": ("editgan_core.cli", "create, grow, inspect or push a model bundle"),
    "train-gan": ("editgan_core.train.gan", "train a StyleGAN2 (torchrun for several GPUs)"),
    "train-encoder": ("editgan_core.train.encoder", "train the image-to-W+ encoder of a generator"),
    "train-segmenter": ("editgan_core.train.segmenter", "train the segmentation branch from annotations"),
    "train-presets": ("editgan_core.train.presets", "learn a bundle's preset editing vectors"),
    "train-attributes": ("editgan_core.train.attributes", "train the attribute judge the benchmarks use"),
    "lpips": ("editgan_core.losses", "download LPIPS weights into a folder"),
    "dataset": ("editgan_core.dataset", "generated images with predicted label maps (DatasetGAN)"),
}
GROUPS: dict[str, dict[str, tuple[str, str]]] = {
    "bench": {
        "ops": ("editgan_core.eval.ops_speed", "generator passes with native vs reference ops"),
        "render": ("editgan_core.eval.render_speed", "procedural renderer throughput"),
    },
    "eval": {
        "edit": ("editgan_core.eval.edit", "editing success on held-out faces, or interactive timings"),
        "embedding": ("editgan_core.eval.embedding", "embedding fidelity and segmentation accuracy"),
        "kid": ("editgan_core.eval.kid", "KID of a generator against rendered faces"),
    },
}


def usage(prog: str = "editgan") -> str:
    lines = [f"usage: {prog} COMMAND [options]   ({prog} COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<18}{text}" for name, (_, text) in COMMANDS.items()]
    for group, members in GROUPS.items():
        lines += [f"  {group + ' ' + name:<18}{text}" for name, (_, text) in members.items()]
    return "\n".join(lines)


def _run(module: str, argv: list[str], name: str) -> int:
    """``module.main(argv)`` with ``name`` as the program name its help and errors show."""
    saved, sys.argv[0] = sys.argv[0], name
    try:
        result = importlib.import_module(module).main(argv)
    finally:
        sys.argv[0] = saved
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None, prog: str = "editgan") -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to a subcommand; its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(prog))
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ("apply", "bundle"):
        return _run("editgan_core.cli", [command, *rest], prog)
    if command in COMMANDS:
        return _run(COMMANDS[command][0], rest, f"{prog} {command}")
    if command in GROUPS and rest and rest[0] in GROUPS[command]:
        return _run(GROUPS[command][rest[0]][0], rest[1:], f"{prog} {command} {rest[0]}")
    known = GROUPS.get(command)
    problem = (f"'{command}' needs one of: {', '.join(known)}" if known else f"unknown command '{command}'")
    print(f"{prog}: {problem}\n\n{usage(prog)}", file=sys.stderr)
    return 2
