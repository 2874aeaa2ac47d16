"""What the page adds to the core: edit, embed and refine through the app's HTTP API vs the same core call.

    python -m webapp.bench_overhead --bundle checkpoints/faces64 [--repeats 5] [--threads N] [--busy 1]

Launches the studio in this process (timing its start-up: models, first page, thumbnails), drives it
with ``gradio_client`` (request sent -> last streamed output received) and times the same
``EditGANPipeline`` call in process on the same latent, painting and vector, in turn with the app
runs. Prints medians of wall time and of this process's CPU time (all threads: server, client,
optimisation), and the app's overhead over the core in percent; on a loaded machine the CPU columns
are the steadier. ``--busy N`` starts N processes that spin on a core, as another program would.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from gradio_client import Client, handle_file
from PIL import Image

from editgan_core.pipeline import EditGANPipeline, prepare_image
from webapp import labels as lab
from webapp.layout import EXAMPLES_DIR, PRECISE
from webapp.session import Session, SessionBox
from webapp.ui import build_demo, launch_kwargs, set_torch_threads

SETTLE_S = 0.5  # pause before each timed run


def spin() -> None:
    while True:
        pass


def painted_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The current label map with a block of another class under the middle: a change to learn."""
    h, w = labels.shape
    edited = labels.copy()
    edited[int(0.55 * h): int(0.65 * h), int(0.35 * w): int(0.65 * w)] = min(3, n_classes - 1)
    return edited


Timing = tuple[list[float], list[float]]  # wall seconds, CPU seconds of this process (all its threads)


def paired_s(app: Callable[[], object], core: Callable[[], object], repeats: int,
             before: Callable[[], object] | None = None, after: Callable[[], object] | None = None
             ) -> tuple[Timing, Timing]:
    """Wall and CPU seconds of ``app`` and ``core``, run in turn ``repeats`` times after one warm-up of each.

    Taking them in pairs lets a shared machine's load hit both alike, and CPU time (server, client
    and optimisation threads together) is what the work costs whatever else runs; ``before``/``after``
    (setting the app's session up and back) are not timed, and each run starts once the server has
    finished its own bookkeeping of the previous request.
    """
    times: tuple[Timing, Timing] = (([], []), ([], []))
    for i in range(repeats + 1):  # the warm-up pays first-call allocations and caches, not what a user waits for
        for fn, (wall, cpu), is_app in ((app, times[0], True), (core, times[1], False)):
            if is_app and before is not None:
                before()
            time.sleep(SETTLE_S)
            started, started_cpu = time.perf_counter(), time.process_time()
            fn()
            if i:
                wall.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
            if is_app and after is not None:
                after()
    return times


class Bench:
    """One served app and one API client on its own session; the same work done through both."""

    def __init__(self, bundle: str, device: str | None, workdir: Path) -> None:
        started = time.perf_counter()
        self.demo = build_demo([bundle], device=device)
        self.startup_s = time.perf_counter() - started
        _, url, _ = self.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True,
                                     **launch_kwargs())
        self.client = Client(url, verbose=False, download_files=False)
        studio = self.demo.studio
        self.pipe: EditGANPipeline = studio.registry.get(studio.registry.default_id)
        self.box = SessionBox()
        self.session: Session = studio.session(self.box)  # starts on the face every new session starts on
        self.latent = self.session.current.latent
        palette = self.pipe.bundle.palette
        self.painted = painted_labels(self.session.current.labels, len(palette))
        for name, ids in (("labels", self.session.current.labels), ("painted", self.painted)):
            Image.fromarray(lab.colorize(ids, palette)).save(workdir / f"{name}.png")
        self.paint_value = {"background": handle_file(str(workdir / "labels.png")), "layers": [],
                            "composite": handle_file(str(workdir / "painted.png"))}
        self.photo = sorted(EXAMPLES_DIR.glob("*.png"))[0]
        self.pixels = prepare_image(self.photo, self.pipe.resolution)
        self.vector = self.session.library.list()[0]

    def close(self) -> None:
        self.box.close()
        self.demo.close()

    def api(self, *args: object, api_name: str) -> None:
        self.client.submit(*args, api_name=api_name).result()

    def timings(self, action: str, steps: int, repeats: int) -> tuple[Timing, Timing]:
        """Seconds of ``repeats`` runs through the app and in process, in pairs."""
        self.api(0, 0.7, api_name="/sample")  # the client's session on the same face as ``self.latent``
        pipe, undo = self.pipe, lambda: self.api(0.5, api_name="/undo")
        if action == "edit":  # after each run, back to the same picture
            return paired_s(lambda: self.api(self.paint_value, steps, 0.5, api_name="/edit"),
                            lambda: pipe.learn_edit(self.latent, self.painted, steps=steps), repeats, after=undo)
        if action == "embed":
            return paired_s(lambda: self.api(handle_file(str(self.photo)), PRECISE, steps, 0.5, api_name="/embed"),
                            lambda: pipe.embed(self.pixels, steps=steps), repeats)
        return paired_s(lambda: self.api(steps, 0.5, False, api_name="/refine"),  # the plain refinement on both sides
                        lambda: pipe.refine(self.latent, [(self.vector, 1.0)], steps=steps), repeats,
                        before=lambda: self.api(self.vector.name, "1.0", 0.5, api_name="/apply_vectors"), after=undo)


def report(label: str, app: Timing, core: Timing) -> str:
    """Medians, and the median of the pairs' overheads (robust to load that changes between pairs)."""
    columns = []
    for a, c in zip(app, core, strict=True):
        overhead = statistics.median(100 * (x - y) / y for x, y in zip(a, c, strict=True))
        columns.append(f"{statistics.median(a):8.3f}{statistics.median(c):8.3f}{overhead:9.0f}%")
    return f"{label:<18}" + "   ".join(columns)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="checkpoints/faces64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the app's policy)")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning on a core meanwhile")
    parser.add_argument("--edit-steps", type=int, default=30)
    parser.add_argument("--embed-steps", type=int, default=100)
    parser.add_argument("--refine-steps", type=int, default=10)
    parser.add_argument("--only", choices=["edit", "embed", "refine"], action="append")
    args = parser.parse_args(argv)
    set_torch_threads(args.threads)
    spinners = [mp.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args.bundle, args.device, Path(tmp))
        try:
            print(f"bundle {bench.pipe.bundle.id} · device {bench.pipe.device} · torch threads "
                  f"{torch.get_num_threads()} · busy processes {args.busy} · repeats {args.repeats} · "
                  f"start-up {bench.startup_s:.2f} s")
            print(f"{'':<18}{'wall time':^26}   {'CPU time':^26}\n{'action':<18}"
                  + f"{'app s':>8}{'core s':>8}{'overhead':>10}" * 2)
            steps = {"edit": args.edit_steps, "embed": args.embed_steps, "refine": args.refine_steps}
            for action in args.only or ["edit", "embed", "refine"]:
                app, core = bench.timings(action, steps[action], args.repeats)
                print(report(f"{action} {steps[action]} steps", app, core), flush=True)
        finally:
            bench.close()
            for p in spinners:
                p.terminate()


if __name__ == "__main__":
    main()
