"""The one-shot GPU run's command line (docs/gpu.md).

    python -m editgan_core.gpu_run prepare            # here: copy fixtures to .gpu_carry/, print the device call
    bash scripts/gpu_run.sh                           # there (= python -m editgan_core.gpu_run run --out $OUT)
    python -m editgan_core.gpu_run run --dry-run --out /tmp/out    # anywhere: tiny, seconds-long phases
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

from editgan_core.gpu_run import plan


def budgets(items: list[str]) -> dict[str, float]:
    parsed = {}
    for item in items:
        name, _, seconds = item.partition("=")
        if name not in plan.PHASE_NAMES or not seconds:
            raise argparse.ArgumentTypeError(f"--budget takes PHASE=SECONDS with PHASE one of "
                                             f"{', '.join(plan.PHASE_NAMES)}; got {item!r}")
        parsed[name] = float(seconds)
    return parsed


def default_fixtures() -> Path:
    if os.environ.get("EDITGAN_FIXTURES"):
        return Path(os.environ["EDITGAN_FIXTURES"])
    return Path(os.environ.get("EDITGAN_SHARED", plan.REPO.parent / "shared")) / "fixtures"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m editgan_core.gpu_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("run", "prepare"):
        s = sub.add_parser(name)
        s.add_argument("--total", type=float, help=f"wall budget in seconds (default {plan.DEFAULT_TOTAL_S}; "
                                                   f"dry run {plan.DRY_TOTAL_S})")
        s.add_argument("--phases", default=",".join(plan.PHASE_NAMES),
                       help=f"comma-separated subset of {','.join(plan.PHASE_NAMES)} (e.g. a rerun)")
        s.add_argument("--budget", action="append", default=[], metavar="PHASE=SECONDS", help="override a cap")
        s.add_argument("--resume", help="folder (in the checkout) with a 128-px shard set to continue training")
        s.add_argument("--train-args", default="", help="extra train.gan arguments for a fresh run (one string)")
    run = sub.choices["run"]
    run.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="results folder (default $OUT)")
    run.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "editgan_gpu_run",
                     help="scratch: CUDA build cache, benchmark bundle, the training run (a rerun continues it)")
    run.add_argument("--dry-run", action="store_true", help="tiny models, seconds-long phases, any machine")
    sub.choices["prepare"].add_argument("--fixtures", type=Path, default=default_fixtures(),
                                        help="the shared fixtures folder (default ../shared/fixtures)")
    args = p.parse_args(argv)
    args.phase_list = [name for name in args.phases.split(",") if name]
    unknown = set(args.phase_list) - set(plan.PHASE_NAMES)
    if unknown:
        p.error(f"unknown phases {sorted(unknown)}; choose from {', '.join(plan.PHASE_NAMES)}")
    try:
        args.budgets = budgets(args.budget)
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    if args.command == "run" and args.out is None:
        p.error("--out is required where $OUT is not set")
    return args


def forwarded(args: argparse.Namespace) -> list[str]:
    """The run options ``prepare`` puts into the printed device command."""
    extra = []
    if args.phase_list != list(plan.PHASE_NAMES):
        extra += ["--phases", ",".join(args.phase_list)]
    extra += [f"--budget={name}={seconds:g}" for name, seconds in args.budgets.items()]
    extra += ["--resume", args.resume] if args.resume else []
    return extra + (["--train-args", args.train_args] if args.train_args else [])


def main(argv: list[str] | None = None) -> int:
    from editgan_core.cli_common import setup_logging

    setup_logging()
    args = parse(argv)
    dry = getattr(args, "dry_run", False)
    total = args.total or (plan.DRY_TOTAL_S if dry else plan.DEFAULT_TOTAL_S)
    if args.command == "prepare":
        try:
            tests = bool({"cuda_tests", "core_tests"} & set(args.phase_list))
            done = plan.prepare(args.fixtures, total, forwarded(args), tests=tests)
        except (OSError, RuntimeError) as exc:
            print(f"prepare: {exc}", file=sys.stderr)
            return 2
        for line in plan.describe(total, dry=False):
            print(line)
        size = done["travelling_bytes"]
        print(f"copied {len(done['copied'])} fixtures into {plan.FIXTURES_DIR}/: {', '.join(done['copied'])}")
        if size is not None:
            print(f"working tree + carry: {size / 2**20:.1f} MiB of {plan.TREE_MAX_BYTES // 2**20} MiB")
        print("device call (also as JSON below):\n  " + plan.format_call(done["run"]))
        print(json.dumps(done["run"]))
        return 0
    from editgan_core.gpu_run.runner import Runner

    runner = Runner(args.out, args.work, total, dry, args.phase_list, args.budgets, shlex.split(args.train_args),
                    args.resume)
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
