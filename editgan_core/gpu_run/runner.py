"""Runs the phases one after another, each in its own process group under its own time budget.

A phase that outlives its budget is stopped (SIGTERM, then SIGKILL) and reported as cut; the next
phase still runs. Results land in ``$OUT`` as each phase ends (the phases themselves write theirs as
they go), so a run the device tool cuts short still returns what finished.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from editgan_core.gpu_run import plan

UI_IMPORT = re.compile(r"^\s*(?:import|from)\s+(?:gradio|gradio_client|webapp|playwright)\b", re.M)
OUTCOME = re.compile(r"\b(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
KILL_GRACE_S = 5.0
DRY_CUDA_TESTS = ["tests/test_cuda_ext_logic.py", "tests/test_ops.py"]
DRY_CORE_TESTS = ["tests/test_ops.py"]
SELF_TEST = "tests/test_gpu_run.py"  # runs a whole dry run: never inside a run


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so a run cut at any moment leaves a whole file."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def ui_test_files(tests: Path) -> list[str]:
    """Test modules that import the UI stack (gradio, webapp, playwright): not collectable without gradio."""
    return sorted(f"tests/{p.name}" for p in tests.glob("test_*.py") if UI_IMPORT.search(p.read_text()))


def merge_junit(target: Path, part: Path, suite: str) -> dict[str, int]:
    """Add ``part``'s test suites to ``target`` under the name ``suite`` (replacing an earlier one)."""
    root = ET.parse(part).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    merged = ET.parse(target).getroot() if target.is_file() else ET.Element("testsuites")
    for old in [s for s in merged if s.get("name") == suite]:
        merged.remove(old)
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for s in suites:
        s.set("name", suite)
        merged.append(s)
        for key in counts:
            counts[key] += int(s.get(key, 0))
    write_text(target, ET.tostring(merged, encoding="unicode"))
    return counts


def headline(record: dict) -> dict:
    """The few figures of a phase's record worth a line in the output tail."""
    result = record.get("result") or {}
    if "junit" in record:
        return record["junit"] or {"junit": None, "lines": record.get("outcome_lines")}
    if "saves" in result:
        last = result["saves"][-1] if result["saves"] else {}
        return {k: result[k] for k in ("images_seen", "images_per_s", "device", "ops")} | {"shards": last.get("shards")}
    if "machine" in result:
        keys = ("built", "wall_s", "errors", "reason")
        return {"gpu": result["machine"].get("gpu")} | {k: result.get(k) for k in keys}
    return result


class Log:
    """One log file for the whole run (capped), echoed to stdout for the device tool's output tail."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")
        self.lock = threading.Lock()
        self.capped = False

    def line(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)
            if self.capped:
                return
            if self.file.tell() + len(text) > plan.LOG_MAX_BYTES:
                self.file.write(f"[log capped at {plan.LOG_MAX_BYTES} bytes; the rest went to stdout only]\n")
                self.capped = True
            else:
                self.file.write(text + "\n")
            self.file.flush()


class Runner:
    def __init__(self, out: Path, work: Path, total_s: float, dry: bool, phases: list[str],
                 budgets: dict[str, float], train_args: list[str], resume: str | None,
                 repo: Path = plan.REPO) -> None:
        self.out, self.work, self.total_s, self.dry, self.repo = out, work, total_s, dry, repo
        self.phases = [p for p in plan.PHASES if p.name in phases]
        self.budgets, self.train_args, self.resume = budgets, train_args, resume
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        self.log = Log(out / plan.LOG)
        self.ops = "native"  # the CUDA ops are used by later phases only once their tests pass
        self.started = time.monotonic()
        self.summary: dict = {"schema": "editgan-gpu-run/1", "dry_run": dry, "total_budget_s": total_s,
                              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "environment": self.environment(), "phases": {}}

    # -- environment for the phases ---------------------------------------------------------------
    def environment(self) -> dict:
        return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
                "gradio": importlib.util.find_spec("gradio") is not None,
                "pytest_xdist": importlib.util.find_spec("xdist") is not None,
                "fixtures": self.fixtures()}

    def fixtures(self) -> str | None:
        carried = self.repo / plan.FIXTURES_DIR
        return os.environ.get("EDITGAN_FIXTURES") or (str(carried) if carried.is_dir() else None)

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_MININTERVAL="2" if self.dry else "15",
                   EDITGAN_OPS=self.ops)
        env.setdefault("TORCH_EXTENSIONS_DIR", str(self.work / "torch_extensions"))
        if self.dry:
            env.setdefault("OMP_NUM_THREADS", "1")  # tiny models: threads only contend on a shared CPU
        if self.fixtures():
            env["EDITGAN_FIXTURES"] = self.fixtures()
        return env

    # -- the phases' commands ------------------------------------------------------------------------
    def pytest(self, name: str, marker: str, targets: list[str], parallel: bool) -> list[str]:
        ignored = [SELF_TEST] + ([] if self.summary["environment"]["gradio"] else ui_test_files(self.repo / "tests"))
        self.summary["phases"].setdefault(name, {})["ignored_test_files"] = ignored
        argv = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-m", marker,
                "--junitxml", str(self.work / f"{name}.xml"), *(f"--ignore={f}" for f in ignored)]
        if parallel and self.summary["environment"]["pytest_xdist"]:
            argv += ["-n", str(min(8, os.cpu_count() or 1))]
        return argv + targets

    def command(self, name: str, budget: float) -> list[str]:
        py, dry = [sys.executable, "-m"], ["--dry-run"] if self.dry else []
        if name == "build":
            return [*py, "editgan_core.gpu_run.build", "--result", str(self.work / "build.json")]
        if name == "cuda_tests":
            return self.pytest(name, "cuda", DRY_CUDA_TESTS if self.dry else ["tests"], parallel=False)
        if name == "core_tests":
            return self.pytest(name, "not cuda and not browser", DRY_CORE_TESTS if self.dry else ["tests"],
                               parallel=not self.dry)
        if name == "bench":
            return [*py, "editgan_core.gpu_run.bench", "--out", str(self.out / plan.BENCH), "--work", str(self.work),
                    *dry]
        resume = ["--resume", self.resume] if self.resume else []
        return [*py, "editgan_core.gpu_run.train", "--out", str(self.out), "--work", str(self.work),
                "--deadline", f"{time.time() + budget:.1f}", "--max-shards", str(plan.CHECKPOINT_FILES),
                "--result", str(self.work / "train.json"), *dry, *resume, "--", *self.train_args]

    # -- running one phase -------------------------------------------------------------------------
    def execute(self, name: str, argv: list[str], budget: float) -> dict:
        self.log.line(f"=== {name}: budget {budget:.0f} s, ops {self.ops}: {shlex.join(argv)}")
        for stale in (self.work / f"{name}.xml", self.work / f"{name}.json"):  # an earlier run's results
            stale.unlink(missing_ok=True)
        outcomes: dict[str, int] = {}

        def pump(stream) -> None:
            for raw in stream:
                text = raw.decode("utf-8", "replace").rstrip("\n").split("\r")[-1]
                if match := OUTCOME.search(text):
                    outcomes[match[1]] = outcomes.get(match[1], 0) + 1
                self.log.line(text)

        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=self.repo, env=self.child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        reader = threading.Thread(target=pump, args=(proc.stdout,), daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=budget)
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            rc, status = self.stop(proc), "cut"
        reader.join(KILL_GRACE_S)
        elapsed = time.monotonic() - start
        self.log.line(f"=== {name}: {status} (rc {rc}) after {elapsed:.1f} s of {budget:.0f} s")
        return {"status": status, "rc": rc, "budget_s": round(budget, 1), "elapsed_s": round(elapsed, 1),
                "command": shlex.join(argv), "outcome_lines": outcomes}

    @staticmethod
    def stop(proc: subprocess.Popen) -> int:
        """SIGTERM the phase's process group, SIGKILL it after a grace period; the exit status."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                return proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                continue
        return proc.wait()

    # -- results ----------------------------------------------------------------------------------
    def read_json(self, path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            return {"error": f"no result: {exc}"}

    def collect(self, name: str, record: dict) -> None:
        if name in ("cuda_tests", "core_tests"):
            part = self.work / f"{name}.xml"
            if part.is_file():
                record["junit"] = merge_junit(self.out / plan.TESTS, part, name)
            else:
                record["junit"] = None  # cut before pytest wrote it: the per-test lines are in the log
            if name == "cuda_tests":
                self.choose_ops(record)
        elif name == "bench":
            bench = self.read_json(self.out / plan.BENCH)
            record["result"] = {"sections": sorted(bench), "errors": bench.get("errors", {})}
        else:
            record["result"] = self.read_json(self.work / f"{name}.json")

    def choose_ops(self, record: dict) -> None:
        """The CUDA ops for the later phases only when they built and every CUDA test passed."""
        build = self.summary["phases"].get("build", {}).get("result", {})
        junit = record.get("junit") or {}
        passed = record["status"] == "ok" and junit.get("tests", 0) > junit.get("skipped", 0)
        self.ops = "auto" if build.get("built") and passed else "native"
        record["ops_for_later_phases"] = self.ops

    def write_summary(self) -> None:
        self.summary["elapsed_s"] = round(time.monotonic() - self.started, 1)
        write_text(self.out / plan.SUMMARY, json.dumps(self.summary, indent=1))

    # -- the whole run -----------------------------------------------------------------------------
    def run(self) -> int:
        for text in plan.describe(self.total_s, self.dry):
            self.log.line(text)
        deadline = self.started + self.total_s
        for i, phase in enumerate(self.phases):
            remaining = deadline - time.monotonic()
            budget = plan.phase_budget(phase, self.phases[i + 1:], remaining, self.dry, self.budgets.get(phase.name))
            record = self.summary["phases"].setdefault(phase.name, {})
            if budget < plan.MIN_PHASE_S:
                record.update(status="skipped", reason=f"{remaining:.0f} s left of the total budget")
                self.log.line(f"=== {phase.name}: skipped, {remaining:.0f} s left")
            else:
                record.update(self.execute(phase.name, self.command(phase.name, budget), budget))
                self.collect(phase.name, record)
            self.write_summary()
        return self.finish()

    def finish(self) -> int:
        self.summary["tidied"] = plan.tidy_out(self.out)
        self.write_summary()
        self.summary["out_check"] = plan.check_out(self.out)
        self.write_summary()
        for name, record in self.summary["phases"].items():
            self.log.line(f"{name:<11} {record.get('status', '?'):<8} {record.get('elapsed_s', 0):>6} s "
                          f"of {record.get('budget_s', 0):>4} s  {json.dumps(headline(record))[:300]}")
        check = self.summary["out_check"]
        self.log.line(f"$OUT: {len(check['files'])} files, {check['total_bytes'] / 2**20:.1f} MiB, "
                      f"{'within the limits' if check['ok'] else 'PROBLEMS: ' + '; '.join(check['problems'])}")
        statuses = {r.get("status") for r in self.summary["phases"].values()}
        return 0 if statuses <= {"ok"} and check["ok"] else 1
