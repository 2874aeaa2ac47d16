"""Fuzz and soak a running studio: ``python -m webapp.fuzz [--url URL --pid PID | --bundle B] --minutes M --clients N``.

Without ``--url`` it starts its own server (``python -m webapp --bundle B``) and watches that process's
memory. Three phases: the malformed inputs (``webapp.fuzz_cases.malformed``), a burst of refused
2 MB calls (what they leave in memory), then N clients doing what visitors do for M minutes. It prints
the counts by outcome (ok, specific refusal, bare error, catch-all fallback, leaked path or type, crash
or hang, silent wrong result), the server's RSS over time, and latency percentiles per operation (the
strength slider's p95 among them); exit status 1 when any bad outcome occurred.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from gradio_client import Client

from webapp.fuzz_cases import hostile_files, malformed, refused_burst, session_workload, vector_facts
from webapp.fuzz_client import BAD, OUTCOMES, MemoryLog, Tally, percentile

START_TIMEOUT_S = 300.0
SETTLE_S = 10.0  # after the load: how long the server gets to return to idle before "after" is read


@contextlib.contextmanager
def own_server(bundle: str, threads: int | None) -> Iterator[tuple[str, int]]:
    """Start ``python -m webapp`` on a free port; yields (url, pid) and stops it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "EDITGAN_NO_DOWNLOAD": "1"}
    args = [sys.executable, "-m", "webapp", "--bundle", bundle, "--port", str(port)]
    if threads:
        args += ["--threads", str(threads)]
    log = tempfile.NamedTemporaryFile(prefix="editgan-fuzz-server-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the server stopped while starting; see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "config", timeout=5).status_code == 200:
                    break
            time.sleep(1)
        else:
            raise SystemExit(f"the server did not start within {START_TIMEOUT_S:.0f} s; see {log.name}")
        print(f"server: {url} (pid {proc.pid}, log {log.name})", flush=True)
        yield url, proc.pid
    finally:
        alive = proc.poll() is None
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        if not alive:
            print(f"the server process had ended by itself (exit status {proc.returncode}); see {log.name}")


def soak(url: str, presets: list[str], preset_file: Path, folder: Path, clients: int, seconds: float, tally: Tally,
         memory: MemoryLog, with_edits: bool = True, seed: int = 0) -> None:
    """``clients`` sessions doing ``session_workload`` rounds until ``seconds`` have passed."""
    end = time.monotonic() + seconds
    failures_before = tally.bad()

    def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        client = Client(url, verbose=False, download_files=False)
        while time.monotonic() < end:
            session_workload(client, presets, preset_file, folder, tally, rng, with_edits)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    next_report = time.monotonic() + max(10.0, seconds / 10)
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        if time.monotonic() >= next_report:
            next_report += max(10.0, seconds / 10)
            done = sum(len(v) for v in tally.latencies.values())
            print(f"  soak t={seconds - max(0.0, end - time.monotonic()):.0f}s calls={done} "
                  f"bad={tally.bad() - failures_before} rss={_mb(memory.now())}", flush=True)


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MB"


def report(phases: dict[str, Tally], memory: MemoryLog, marks: dict[str, float | None]) -> dict[str, Any]:
    """Print the outcome table, latencies and memory; return the same as a dict (for --json and tests)."""
    out: dict[str, Any] = {"phases": {}, "memory_mb": marks, "rss_timeline": memory.samples[:: max(1, len(
        memory.samples) // 60)]}
    print("\noutcomes            " + "  ".join(f"{o[:12]:>12}" for o in OUTCOMES))
    for name, tally in phases.items():
        print(f"{name:<20}" + "  ".join(f"{tally.counts[o]:>12}" for o in OUTCOMES))
        lat = {op: {"n": len(v), "p50_s": percentile(v, 50), "p95_s": percentile(v, 95)}
               for op, v in sorted(tally.latencies.items())}
        out["phases"][name] = {"counts": tally.counts, "examples": tally.examples, "latency": lat}
    for name, tally in phases.items():
        for outcome in BAD:
            for example in tally.examples.get(outcome, []):
                print(f"  [{name}] {outcome}: {example}")
    soak_tally = phases.get("soak")
    if soak_tally is not None:
        print("\nsoak latency (s)    n      p50     p95")
        for op, v in sorted(soak_tally.latencies.items()):
            print(f"  {op:<16}{len(v):>5} {percentile(v, 50):>8.3f}{percentile(v, 95):>8.3f}")
    print("\nserver RSS: " + ", ".join(f"{k} {_mb(v)}" for k, v in marks.items()))
    step = max(1, len(memory.samples) // 12)
    print("RSS over time: " + " ".join(f"{t:.0f}s:{v:.0f}" for t, v in memory.samples[::step]))
    return out


def run(url: str, pid: int | None, minutes: float, clients: int, burst: int = 40, with_edits: bool = True,
        seed: int = 0, settle_s: float = SETTLE_S) -> dict[str, Any]:
    """The three phases against ``url`` (``pid``: the server process, for its memory); returns the report."""
    random.seed(seed)
    memory = MemoryLog(pid).start()
    marks: dict[str, float | None] = {"idle": memory.now()}
    phases = {"malformed": Tally(), "refused burst": Tally(), "soak": Tally()}
    with tempfile.TemporaryDirectory(prefix="editgan-fuzz-") as tmp:
        folder = Path(tmp)

        def client_for() -> Client:
            return Client(url, verbose=False, download_files=False)

        bundle_id, shape, presets, preset_file = vector_facts(client_for(), folder)
        files = hostile_files(folder, bundle_id, shape)
        print(f"fuzz: bundle {bundle_id}, latent {shape[0]}x{shape[1]}; malformed inputs", flush=True)
        malformed(client_for, url, files, presets[0], phases["malformed"])
        marks["before burst"] = memory.now()
        print(f"fuzz: {burst} x 2 refused calls of 2 MB", flush=True)
        refused_burst(client_for, files, burst, phases["refused burst"])
        time.sleep(2)
        marks["after burst"] = memory.now()
        print(f"soak: {clients} clients for {minutes:g} min", flush=True)
        soak(url, presets, preset_file, folder, clients, minutes * 60, phases["soak"], memory, with_edits, seed)
        marks["end of soak"] = memory.now()
        time.sleep(settle_s)
        marks["after"] = memory.now()
    memory.stop()
    marks["peak"] = memory.peak()
    return report(phases, memory, marks)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m webapp.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running studio (default: start one on --bundle)")
    parser.add_argument("--pid", type=int, help="the running studio's process id, for its memory (with --url)")
    parser.add_argument("--bundle", default="checkpoints/faces64", help="bundle for the server this starts")
    parser.add_argument("--threads", type=int, help="torch threads of the server this starts")
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the soak phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent sessions in the soak phase")
    parser.add_argument("--burst", type=int, default=40, help="refused 2 MB calls (of each of two kinds)")
    parser.add_argument("--no-edits", action="store_true", help="leave learning edits and refinement out of the soak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        url, pid = (args.url, args.pid) if args.url else stack.enter_context(own_server(args.bundle, args.threads))
        result = run(url, pid, args.minutes, args.clients, args.burst, not args.no_edits, args.seed)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    bad = sum(result["phases"][p]["counts"][o] for p in result["phases"] for o in BAD)
    print(f"\n{bad} bad outcome(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
