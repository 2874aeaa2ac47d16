"""What travels to the lent GPU machine and back, the run's phases and their time budgets.

Kept free of torch so the runner starts in a blink and ``prepare`` runs anywhere.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CARRY_DIR = ".gpu_carry"  # git-ignored; named in the device call's `carry`
FIXTURES_DIR = f"{CARRY_DIR}/fixtures"

# The device tool's limits (see docs/gpu.md): what comes back from $OUT, and what travels there.
OUT_MAX_FILES = 8
OUT_MAX_FILE_BYTES = 16 * 2**20
OUT_MAX_TOTAL_BYTES = 64 * 2**20
OUT_MAX_FOLDERS = 2  # $OUT/a/b/file comes back, $OUT/a/b/c/file does not
OUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
TREE_MAX_BYTES = 64 * 2**20
COMMAND_MAX_S = 600

LOG, SUMMARY, BENCH, TESTS, SAMPLES = "gpu_run.log", "summary.json", "bench.json", "tests.xml", "samples128.png"
RETURNS = {
    LOG: "everything every phase printed (pytest -v lines included), capped at 12 MiB",
    SUMMARY: "per phase: status (ok/failed/cut/skipped), budget, seconds, results; environment; $OUT check",
    BENCH: "the GPU benchmarks (generator speed per ops and precision, segmentation memory, editing at 1024)",
    TESTS: "JUnit XML of the CUDA tests and the core suite (one testsuite per phase)",
    SAMPLES: "the 128-px EMA generator's latest sample grid",
}
CHECKPOINT_FILES = OUT_MAX_FILES - len(RETURNS)  # shards of the 128-px training checkpoint
LOG_MAX_BYTES = 12 * 2**20

DEFAULT_TOTAL_S = 420  # 7 min: with a machine start (1-2 min) this leaves about 5 of the 15 device minutes
DRY_TOTAL_S = 150
TIMEOUT_MARGIN_S = 45  # the device call's timeout_s over --total: start-up, final checks and a kill's grace
MIN_PHASE_S = 0.5  # a phase given less is skipped (only an explicit --budget can do that)


@dataclass(frozen=True)
class Phase:
    name: str
    cap_s: float | None  # at most this long on the GPU machine; None: whatever is left
    floor_s: float  # seconds the phases before it leave free for it
    dry_cap_s: float
    what: str


PHASES = (
    Phase("build", 180, 30, 30, "compile the CUDA ops with ninja (both extensions in parallel processes)"),
    Phase("cuda_tests", 90, 20, 40, "pytest -m cuda: the kernels and native-vs-CUDA parity of ops and generator"),
    Phase("bench", 150, 30, 60, f"GPU benchmarks -> {BENCH}"),
    Phase("core_tests", 90, 20, 40, "the core test suite with CUDA visible (UI tests deselected without gradio)"),
    Phase("train", None, 60, 15, "train the 128-px demo GAN (--recon, co-trained encoder), shards every minute"),
)
PHASE_NAMES = tuple(p.name for p in PHASES)
DRY_FLOOR_S = 4.0


def phase_budget(phase: Phase, later: list[Phase], remaining: float, dry: bool,
                 override: float | None = None) -> float:
    """Seconds this phase may take: its cap (or ``override``), less what the later phases are owed."""
    reserve = sum(DRY_FLOOR_S if dry else p.floor_s for p in later)
    cap = override if override is not None else (phase.dry_cap_s if dry else phase.cap_s)
    return max(0.0, min(math.inf if cap is None else cap, remaining - reserve))


def run_call(total_s: float, extra_args: list[str] | None = None) -> dict:
    """The device tool's `run` arguments for this run."""
    command = shlex.join(["bash", "scripts/gpu_run.sh", *(["--total", f"{total_s:g}"] if total_s != DEFAULT_TOTAL_S
                                                          else []), *(extra_args or [])])
    return {"command": command, "carry": [CARRY_DIR], "timeout_s": int(min(COMMAND_MAX_S, total_s + TIMEOUT_MARGIN_S))}


def describe(total_s: float, dry: bool) -> list[str]:
    """What the run carries, returns and does: printed at its start and by ``prepare``."""
    lines = [f"carry: {CARRY_DIR}/ (git-ignored; {FIXTURES_DIR}/ holds the ../shared fixtures the tests read, "
             f"via EDITGAN_FIXTURES)",
             f"returns from $OUT (at most {OUT_MAX_FILES} files, {OUT_MAX_FILE_BYTES // 2**20} MiB each, "
             f"{OUT_MAX_TOTAL_BYTES // 2**20} MiB together):"]
    lines += [f"  {name:<16} {what}" for name, what in RETURNS.items()]
    lines.append(f"  gan-s<step>-<i>of<n>.safetensors  the resumable 128-px checkpoint, at most {CHECKPOINT_FILES} "
                 f"shards (python -m editgan_core.train.shards assemble)")
    lines.append(f"phases (total budget {total_s:g} s{', dry run' if dry else ''}; each phase at most its cap):")
    for p in PHASES:
        cap = p.dry_cap_s if dry else p.cap_s
        lines.append(f"  {p.name:<11} cap {'rest' if cap is None else f'{cap:g} s':>6}  {p.what}")
    return lines


def check_out(out: Path) -> dict:
    """The files under ``out`` against the device tool's limits on what comes back."""
    files = sorted(p for p in out.rglob("*") if p.is_file())
    listed = [{"name": str(p.relative_to(out)), "bytes": p.stat().st_size} for p in files]
    problems = []
    if len(files) > OUT_MAX_FILES:
        problems.append(f"{len(files)} files, more than {OUT_MAX_FILES}")
    total = sum(f["bytes"] for f in listed)
    if total > OUT_MAX_TOTAL_BYTES:
        problems.append(f"{total} bytes together, more than {OUT_MAX_TOTAL_BYTES}")
    for f in listed:
        parts = Path(f["name"]).parts
        if f["bytes"] > OUT_MAX_FILE_BYTES:
            problems.append(f"{f['name']} has {f['bytes']} bytes, more than {OUT_MAX_FILE_BYTES}")
        if len(parts) > OUT_MAX_FOLDERS + 1 or not all(OUT_NAME.match(part) for part in parts):
            problems.append(f"{f['name']} would not come back (depth or characters)")
    return {"files": listed, "total_bytes": total, "ok": not problems, "problems": problems}


def tidy_out(out: Path) -> list[str]:
    """Remove what a killed phase can leave in ``out``: half-written files, superseded or partial shard sets."""
    from editgan_core.train.shards import GAN_PREFIX, NAME, complete_sets

    sets = complete_sets(out, GAN_PREFIX)
    keep = set(sets[max(sets)]) if sets else set()
    removed = [p for p in out.rglob(".*") if p.is_file() and p.suffix in (".tmp", ".partial")]
    removed += [p for p in out.iterdir() if (m := NAME.match(p.name)) and m["prefix"] == GAN_PREFIX and p not in keep]
    for path in removed:
        path.unlink(missing_ok=True)
    return sorted(p.name for p in removed)


# --- prepare (run here, before the device call) ---------------------------------------------------


def needed_fixtures(source: Path, tests: Path = REPO / "tests") -> list[Path]:
    """The fixture files some test names (by file name), so only those travel."""
    texts = "\n".join(p.read_text(errors="replace") for p in sorted(tests.glob("*.py")))
    return [p for p in sorted(source.iterdir()) if p.is_file() and p.name in texts]


def travelling_bytes(repo: Path) -> int | None:
    """Tracked plus untracked-not-ignored files plus the carried folder (None without git)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                                capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        return None
    files = [repo / name for name in listed if name] + [p for p in (repo / CARRY_DIR).rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files if p.is_file())


def prepare(source: Path, total_s: float, extra_args: list[str], repo: Path = REPO, tests: bool = True) -> dict:
    """Copy the needed fixtures into the carried folder (none for a run without test phases, which leaves
    more of the 64 MiB to a carried shard set); return the device call and what travels."""
    if tests and not source.is_dir():
        raise FileNotFoundError(f"no fixtures at {source} (set EDITGAN_FIXTURES or pass --fixtures)")
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{CARRY_DIR}/"], cwd=repo).returncode == 0
    if not ignored:
        raise RuntimeError(f"{CARRY_DIR}/ is not git-ignored here: it would travel twice and count twice")
    target = repo / FIXTURES_DIR
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    copied = [shutil.copy2(p, target / p.name) for p in needed_fixtures(source, repo / "tests")] if tests else []
    size = travelling_bytes(repo)
    if size is not None and size > TREE_MAX_BYTES:
        raise RuntimeError(f"{size / 2**20:.1f} MiB would travel, more than the {TREE_MAX_BYTES // 2**20} MiB limit")
    return {"copied": [str(Path(p).relative_to(repo)) for p in copied], "travelling_bytes": size,
            "run": run_call(total_s, extra_args)}


def format_call(call: dict) -> str:
    return (f"run(command={json.dumps(call['command'])}, carry={json.dumps(call['carry'])}, "
            f"timeout_s={call['timeout_s']})")
