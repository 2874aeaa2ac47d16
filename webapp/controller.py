"""The studio's actions on a ``Session``, in plain Python: what each button does, minus Gradio.

Every action goes through ``EditGANPipeline`` (never around it) and returns arrays, ``Step``s or
small outcome objects; the UI layer only maps them onto components. Long actions are generators:
they yield ``Progress`` (with a preview picture every few steps) and ``Notice``s, then one outcome.
"""

from __future__ import annotations

import queue
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from editgan_core.latents import LatentFile, save_latent
from editgan_core.losses import image_psnr
from editgan_core.optim import StepInfo
from editgan_core.pipeline import EditGANPipeline, EditResult, InputError, prepare_image
from editgan_core.vectors import EditVector, VectorError, save_vector
from webapp import labels as lab
from webapp.registry import ModelRegistry
from webapp.session import Session, SessionBox, Step

MAX_ACTIVE = 6  # vectors composed at once (one strength slider each)
EDITOR_SIDE = 256  # small models are painted on an enlarged canvas, then read back per model pixel
PREVIEWS_PER_JOB = 8  # streamed intermediate pictures per optimisation
INITIAL_SEED = 0  # the face every new session starts on
HISTORY_STRIP = 12  # steps shown as pictures in the history strip
SESSION_IDLE_S = 3 * 3600  # sessions unused this long are closed (history and temp folder dropped)

R = TypeVar("R")


# ----------------------------------------------------------------------------------------------- outcomes


@dataclass
class Progress:
    """One optimisation step done; ``preview`` is set every few steps."""

    step: int
    steps: int
    loss: float
    preview: np.ndarray | None = None


@dataclass
class Notice:
    """Something the user should be told (shown as a warning, the action still goes on)."""

    text: str


@dataclass
class EmbedOutcome:
    step: Step
    source: np.ndarray  # the photo as the model sees it
    psnr: float
    steps_done: int
    stopped: bool


@dataclass
class EditOutcome:
    step: Step
    before: np.ndarray
    region: np.ndarray  # (H, W) bool
    result: EditResult
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class View:
    """Everything the page shows about the session's current step."""

    image: np.ndarray | None
    labels: np.ndarray | None  # class ids
    label_picture: np.ndarray | None
    overlay: np.ndarray | None
    editor: dict[str, object] | None
    active: list[tuple[str, float]]
    history: list[tuple[np.ndarray, str]]
    history_text: str
    can_undo: bool
    can_redo: bool
    history_start: int = 0  # history index of the first picture in ``history``


# ----------------------------------------------------------------------------------------------- helpers


class _Finished:
    def __init__(self, value: Any) -> None:
        self.value = value


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def stream_job(work: Callable[[Callable[[StepInfo], None]], R], preview: Callable[[torch.Tensor], np.ndarray],
               steps: int, stop: threading.Event) -> Generator[Progress, None, R]:
    """Run ``work(callback)`` in a worker thread and yield its progress; ``return``s its result.

    The optimisation loops report through callbacks, while Gradio streams by iterating a
    generator: the thread and a queue connect the two. Use as ``result = yield from stream_job(...)``.
    If the consumer goes away (page closed, event cancelled), ``stop`` is set so the loop ends too.
    """
    every = max(1, steps // PREVIEWS_PER_JOB)
    q: queue.Queue = queue.Queue()

    def callback(info: StepInfo) -> None:
        show = info.step == 1 or info.step % every == 0 or info.step == info.steps  # the first one is quick feedback
        picture = preview(info.variable) if show else None
        q.put(Progress(info.step, info.steps, info.loss, picture))

    def target() -> None:
        try:
            q.put(_Finished(work(callback)))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(_Failed(exc))

    threading.Thread(target=target, name="editgan-job", daemon=True).start()
    finished = False
    try:
        while True:
            item = q.get()
            if isinstance(item, _Finished):
                finished = True
                return item.value
            if isinstance(item, _Failed):
                finished = True
                raise item.error
            yield item
    finally:
        if not finished:
            stop.set()


def parse_active(names: str | Sequence[str],
                 scales: str | Sequence[float] | None = None) -> list[tuple[str, float | None]]:
    """'smile, look_left' + '1.5, -0.5' -> [('smile', 1.5), ('look_left', -0.5)]; a missing scale means default."""
    if isinstance(names, str):
        names = [n.strip() for n in re.split(r"[,\n]", names)]
    names = [n for n in names if n]
    if scales is None or scales == "":
        values: list[float | None] = []
    elif isinstance(scales, str):
        try:
            values = [float(s) for s in re.split(r"[,\s]+", scales.strip()) if s]
        except ValueError as exc:
            raise InputError(f"strengths must be numbers separated by commas, got '{scales}'") from exc
    else:
        values = [float(s) for s in scales]
    if len(values) > len(names):
        raise InputError(f"{len(values)} strengths for {len(names)} vectors")
    return [(n, values[i] if i < len(values) else None) for i, n in enumerate(names)]


# ----------------------------------------------------------------------------------------------- studio


class Studio:
    """The actions behind the page; one per app, sessions passed in."""

    def __init__(self, registry: ModelRegistry, session_idle_s: float = SESSION_IDLE_S) -> None:
        self.registry = registry
        self.session_idle_s = session_idle_s
        # every session's folder lives in here, and all of it goes when the app object does (or at exit)
        self.workdir = Path(tempfile.mkdtemp(prefix="editgan-studio-"))
        weakref.finalize(self, shutil.rmtree, self.workdir, ignore_errors=True)
        self._boxes: dict[int, SessionBox] = {}
        self._last_used: dict[int, float] = {}
        self._lock = threading.Lock()

    # -- sessions and models -------------------------------------------------------------------
    def session(self, box: SessionBox, bundle_id: str | None = None) -> Session:
        """The box's session, created on first use (or replaced when another model is chosen).

        A new session starts on the face of ``INITIAL_SEED``: the page shows that face before any
        event has run, so the first action of a visitor (or an API client) already has a picture.
        """
        bundle_id = bundle_id or (box.session.bundle_id if box.session else self.registry.default_id)
        if bundle_id is None:
            raise InputError("no model bundle is installed: put one into checkpoints/ (see the README)")
        if box.session is None or box.session.bundle_id != bundle_id:
            pipe = self.registry.get(bundle_id)
            box.close()
            box.session = Session(bundle_id, pipe.latent_shape, pipe.bundle.vectors_dir, self.workdir)
            self.sample(box.session, INITIAL_SEED)
            self._track(box)
        with self._lock:
            self._last_used[id(box)] = time.monotonic()
        return box.session

    def _track(self, box: SessionBox) -> None:
        """Remember the box, and close sessions idle for longer than ``SESSION_IDLE_S`` (their history
        and temp folder), so a long-running public server does not keep every visitor's work forever."""
        now = time.monotonic()
        with self._lock:
            self._boxes[id(box)] = box
            self._last_used[id(box)] = now
            idle = [k for k, t in self._last_used.items() if now - t > self.session_idle_s]
            stale = [self._boxes.pop(k) for k in idle if k in self._boxes]
            for k in idle:
                self._last_used.pop(k, None)
        for old in stale:
            old.close()

    def initial_page(self, bundle_id: str | None = None) -> tuple[View, list[tuple[np.ndarray, str]], list[str]]:
        """What a new session shows (view, gallery items, vector names), for the page's initial values."""
        box = SessionBox()
        try:
            session = self.session(box, bundle_id)
            return self.view(session), *self.gallery(session)
        finally:
            box.close()
            with self._lock:
                self._boxes.pop(id(box), None)
                self._last_used.pop(id(box), None)

    def pipeline(self, session: Session) -> EditGANPipeline:
        return self.registry.get(session.bundle_id)

    def editor_factor(self, pipe: EditGANPipeline) -> int:
        """How much the paint canvas enlarges the label map (1 for models of 256 px and more)."""
        return max(1, EDITOR_SIDE // pipe.resolution)

    def _step(self, pipe: EditGANPipeline, kind: str, label: str, latent: torch.Tensor, with_labels: bool = True,
              **extra: Any) -> Step:
        render = pipe.render(latent, with_labels=with_labels)
        return Step(kind, label, latent.detach().cpu(), render.image, render.labels, **extra)

    def _require_current(self, session: Session) -> Step:
        if session.current is None:
            raise InputError("no picture yet: sample a face, pick an example or upload a photo first (step 1)")
        return session.current

    def current_with_labels(self, session: Session) -> Step | None:
        """The current step, segmented now if a fast path (a strength drag) left its labels for later."""
        current = session.current
        pipe = self.pipeline(session)
        if current is None or current.labels is not None or pipe.segmenter is None:
            return current
        return session.history.replace(current, replace(current, labels=pipe.render(current.latent).labels))

    def _require_labelled(self, session: Session) -> Step:
        self._require_current(session)
        return self.current_with_labels(session)

    # -- 1 · image -----------------------------------------------------------------------------
    def sample(self, session: Session, seed: int, truncation: float = 0.7) -> Step:
        """A random face of the model, reproducible from the seed."""
        pipe = self.pipeline(session)
        seed = int(seed)
        if not 0 <= seed < 2**31:
            raise InputError("the seed must be between 0 and 2147483647")
        latent = pipe.sample_latent(seed, float(truncation))
        return session.history.push(self._step(pipe, "sample", f"sample seed {seed}", latent))

    def embed(self, session: Session, image: Any, steps: int = 0) -> Iterator[Progress | Notice | EmbedOutcome]:
        """Put a photo into W+: encoder only (``steps=0``) or encoder + ``steps`` optimisation steps."""
        if image is None:
            raise InputError("upload a photo (PNG, JPEG or WebP) or pick an example first")
        pipe = self.pipeline(session)
        pixels = prepare_image(image, pipe.resolution)
        steps = max(0, int(steps))
        if steps == 0:
            result_latent, psnr, done, stopped = pipe.encode(pixels), None, 0, False
        else:
            job = session.new_job()

            def work(callback: Callable[[StepInfo], None]):
                return pipe.embed(pixels, steps=steps, callback=callback, should_stop=job.is_set)

            def preview(latent: torch.Tensor) -> np.ndarray:
                return pipe.render(latent.detach().cpu(), with_labels=False).image

            result = yield from stream_job(work, preview, steps, job)
            result_latent, psnr, done, stopped = result.latent, result.psnr, result.steps_done, result.stopped
            if stopped:
                yield Notice(f"embedding stopped after {done} of {steps} steps; kept the best result so far")
        label = "embed (encoder)" if steps == 0 else f"embed ({done} steps)"
        step = self._step(pipe, "embed", label, result_latent, source=pixels)
        if psnr is None:
            psnr = image_psnr(step.image, pixels)
        session.history.push(step)
        yield EmbedOutcome(step, pixels, float(psnr), done, stopped)

    # -- 3 · paint -----------------------------------------------------------------------------
    def read_paint(self, session: Session, value: Mapping[str, object] | np.ndarray | None) -> lab.PaintResult:
        """The painted label map as class ids (snapped to the class colours)."""
        current = self._require_labelled(session)
        pipe = self.pipeline(session)
        if current.labels is None:
            raise InputError(f"model '{session.bundle_id}' has no segmentation branch, so there is nothing to paint")
        if value is None:
            raise InputError("paint on the label map first (step 3)")
        return lab.read_painting(value, current.labels, pipe.bundle.palette)

    def describe_paint(self, session: Session, paint: lab.PaintResult) -> str:
        """'37 pixels: skin → lips 30, skin → mouth_interior 7' — what the edit will be asked to do."""
        current = self._require_labelled(session)
        if not paint.changed_pixels:
            return "No change painted yet."
        names = {c.id: c.name for c in self.pipeline(session).bundle.classes}
        pairs, counts = np.unique(np.stack([current.labels[paint.changed], paint.labels[paint.changed]], axis=1),
                                  axis=0, return_counts=True)
        order = np.argsort(-counts)
        moves = ", ".join(f"{names[int(pairs[i][0])]} → {names[int(pairs[i][1])]} {int(counts[i])}" for i in order[:6])
        more = f" and {len(order) - 6} more" if len(order) > 6 else ""
        return f"{paint.changed_pixels} pixels changed: {moves}{more}."

    def paint_notice(self, session: Session, paint: lab.PaintResult) -> Notice | None:
        if not paint.far_pixels:
            return None
        return Notice(f"{paint.far_pixels} painted pixel(s) are in a colour that is no class of this model; "
                      "they were left unchanged. Use the brush colours of the palette.")

    # -- 4 · edit ------------------------------------------------------------------------------
    def edit(self, session: Session, value: Mapping[str, object] | np.ndarray | None,
             steps: int = 30) -> Iterator[Progress | Notice | EditOutcome]:
        """Learn the editing vector that turns the current segmentation into the painted one."""
        current = self._require_labelled(session)
        pipe = self.pipeline(session)
        paint = self.read_paint(session, value)
        notice = self.paint_notice(session, paint)
        if notice:
            yield notice
        if not paint.changed_pixels:
            raise InputError("the painted label map is identical to the current one: paint a change first (step 3)")
        steps = max(1, int(steps))
        job = session.new_job()
        base = current.latent

        def work(callback: Callable[[StepInfo], None]) -> EditResult:
            return pipe.learn_edit(base, paint.labels, steps=steps, callback=callback, should_stop=job.is_set)

        def preview(delta: torch.Tensor) -> np.ndarray:
            return pipe.render(base + delta.detach().cpu().reshape(base.shape), with_labels=False).image

        result = yield from stream_job(work, preview, steps, job)
        if result.stopped:
            yield Notice(f"the edit stopped after {result.steps_done} of {steps} steps; kept the best result so far")
        step = session.history.push(Step("edit", f"edit ({self._class_names(pipe, result.class_ids)})",
                                         result.latent.detach().cpu(), result.render.image, result.render.labels))
        session.last_edit = result
        session.last_vector = EditVector(delta=result.delta, name="last edit", bundle_id=session.bundle_id,
                                         class_ids=result.class_ids, source="learned")
        figures = {k: round(float(v), 4) for k, v in result.metrics.items()}
        figures.update(steps=result.steps_done, changed_pixels=paint.changed_pixels, classes=result.class_ids)
        yield EditOutcome(step, current.image, result.region, result, figures)

    def _class_names(self, pipe: EditGANPipeline, ids: Sequence[int]) -> str:
        names = {c.id: c.name for c in pipe.bundle.classes}
        return ", ".join(names.get(i, str(i)) for i in ids)

    def save_vector(self, session: Session, name: str, description: str = "") -> EditVector:
        """Keep the latest learned edit in the session's vector library."""
        if session.last_edit is None:
            raise InputError("learn an edit first (step 4), then save it as a vector")
        if not (name or "").strip():
            raise InputError("give the vector a name")
        edit = session.last_edit
        vec = EditVector(delta=edit.delta, name=name.strip(), description=(description or "").strip(),
                         bundle_id=session.bundle_id, class_ids=edit.class_ids, source="learned",
                         extra={"metrics": {k: float(v) for k, v in edit.metrics.items()}})
        saved = session.library.save(vec)
        session.last_vector = saved
        return saved

    # -- 5 · vectors ---------------------------------------------------------------------------
    def gallery(self, session: Session) -> tuple[list[tuple[np.ndarray, str]], list[str]]:
        """Thumbnails (picture, caption) of every vector in the library, and their names in order."""
        pipe = self.pipeline(session)
        vectors = session.library.list()
        items = []
        for vec in vectors:
            tag = "preset" if vec.source == "preset" or session.library.is_preset(vec.name) else "yours"
            items.append((self.registry.thumbnails.get(pipe, vec), f"{vec.name} · {tag}"))
        return items, [v.name for v in vectors]

    def active(self, session: Session) -> list[tuple[str, float]]:
        current = session.current
        return list(current.active) if current is not None and current.kind == "apply" else []

    def apply_vectors(self, session: Session, items: Sequence[tuple[str, float | None]],
                      with_labels: bool = True) -> Step:
        """Current picture = base + Σ strength·vector (instant). Changing only strengths amends the step.

        ``with_labels=False`` leaves the segmentation for later (``current_with_labels``): a strength
        drag shows the picture first.
        """
        current = self._require_current(session)
        pipe = self.pipeline(session)
        if len(items) > MAX_ACTIVE:
            raise InputError(f"at most {MAX_ACTIVE} vectors can be combined at once")
        vectors = [(session.library.get(name), scale) for name, scale in items]
        resolved = tuple((v.name, float(v.default_scale if s is None else s)) for v, s in vectors)
        if len({n.lower() for n, _ in resolved}) != len(resolved):
            raise InputError("each vector can be active only once; change its strength instead")
        base = current.base if current.kind == "apply" and current.base is not None else current.latent
        latent = pipe.apply(base, [(vec, s) for (vec, _), (_, s) in zip(vectors, resolved, strict=True)])
        label = "apply " + (" + ".join(f"{n}×{s:g}" for n, s in resolved) if resolved else "nothing")
        step = self._step(pipe, "apply", label, latent, with_labels, base=base, active=resolved)
        same_set = current.kind == "apply" and [n for n, _ in current.active] == [n for n, _ in resolved]
        if resolved:
            delta = (latent - base).reshape(pipe.latent_shape)
            class_ids = sorted({c for v, _ in vectors for c in v.class_ids})
            session.last_vector = EditVector(delta=delta, name=" + ".join(n for n, _ in resolved),
                                             bundle_id=session.bundle_id, class_ids=class_ids, source="composed")
        return session.history.amend(step) if same_set else session.history.push(step)

    def add_vector(self, session: Session, name: str) -> Step:
        """Make a vector active at its default strength (picked in the gallery)."""
        items: list[tuple[str, float | None]] = list(self.active(session))
        if any(n.lower() == name.lower() for n, _ in items):
            return self._require_current(session)
        if len(items) >= MAX_ACTIVE:
            raise InputError(f"at most {MAX_ACTIVE} vectors can be combined; remove one first")
        return self.apply_vectors(session, [*items, (name, None)])

    def set_strengths(self, session: Session, strengths: Sequence[float], with_labels: bool = True) -> Step:
        """New strengths for the active vectors (one per slot, in order)."""
        items = self.active(session)
        return self.apply_vectors(session, [(n, float(s)) for (n, _), s in zip(items, strengths, strict=False)],
                                  with_labels)

    def remove_vector(self, session: Session, slot: int) -> Step:
        items = self.active(session)
        if not 0 <= slot < len(items):
            return self._require_current(session)
        return self.apply_vectors(session, items[:slot] + items[slot + 1:])

    def refine(self, session: Session, steps: int = 30) -> Iterator[Progress | Notice | EditOutcome]:
        """Self-supervised refinement of the active vectors on this picture (EditGAN's 'w/ opt')."""
        current = self._require_current(session)
        pipe = self.pipeline(session)
        items = self.active(session)
        if not items or current.base is None:
            raise InputError("add at least one vector from the gallery first; refinement adapts active vectors")
        steps = int(steps)
        if steps <= 0:
            yield Notice("0 refinement steps: the vectors stay applied as they are")
            return
        vectors = [(session.library.get(n), s) for n, s in items]
        base = current.base
        job = session.new_job()

        def work(callback: Callable[[StepInfo], None]) -> EditResult:
            return pipe.refine(base, vectors, steps=steps, callback=callback, should_stop=job.is_set)

        def preview(delta: torch.Tensor) -> np.ndarray:
            return pipe.render(base + delta.detach().cpu().reshape(base.shape), with_labels=False).image

        result = yield from stream_job(work, preview, steps, job)
        if result.stopped:
            yield Notice(f"refinement stopped after {result.steps_done} of {steps} steps; kept the best so far")
        names = " + ".join(f"{n}×{s:g}" for n, s in items)
        step = session.history.push(Step("refine", f"refine {result.steps_done} steps ({names})",
                                         result.latent.detach().cpu(), result.render.image, result.render.labels))
        session.last_vector = EditVector(delta=result.delta, name=f"{names} refined", bundle_id=session.bundle_id,
                                         class_ids=result.class_ids, source="refined")
        before = pipe.render(base, with_labels=False).image
        figures = {k: round(float(v), 4) for k, v in result.metrics.items()}
        figures["steps"] = result.steps_done
        yield EditOutcome(step, before, result.region, result, figures)

    def import_vector(self, session: Session, path: str | Path) -> EditVector:
        """Add a vector file (.safetensors of this project or an official EditGAN .npy) to the library."""
        if not path:
            raise InputError("choose a vector file to import")
        return session.library.import_file(Path(path))

    def export_vector(self, session: Session, name: str) -> Path:
        if not name:
            raise InputError("choose a vector to export")
        vec = session.library.get(name)
        return session.library.export(vec.name, self._export_dir(session))

    # -- 6 · history and export ----------------------------------------------------------------
    def undo(self, session: Session) -> Step | None:
        return session.history.undo()

    def redo(self, session: Session) -> Step | None:
        return session.history.redo()

    def reset(self, session: Session) -> Step | None:
        self._require_current(session)
        return session.history.reset()

    def goto(self, session: Session, index: int) -> Step | None:
        return session.history.goto(index)

    def _export_dir(self, session: Session) -> Path:
        folder = session.workdir / "export" / f"{len(session.history.steps):03d}-{session.history.index:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def export(self, session: Session) -> list[Path]:
        """Current picture and label map (PNG), its latent and the latest vector (safetensors)."""
        current = self._require_labelled(session)
        pipe = self.pipeline(session)
        folder = self._export_dir(session)
        stem = f"{session.bundle_id}-step{session.history.index + 1}"
        files = [folder / f"{stem}-image.png"]
        Image.fromarray(current.image).save(files[0])
        if current.labels is not None:
            files.append(folder / f"{stem}-labels.png")
            Image.fromarray(lab.colorize(current.labels, pipe.bundle.palette)).save(files[-1])
        latent = LatentFile(latent=current.latent, bundle_id=session.bundle_id)
        files.append(save_latent(latent, folder / f"{stem}-latent.safetensors"))
        if session.last_vector is not None:
            try:
                files.append(save_vector(session.last_vector, folder / f"{stem}-vector.safetensors"))
            except VectorError as exc:  # never lose the other files over the vector
                raise InputError(f"could not write the vector: {exc}") from exc
        return files

    # -- what the page shows -------------------------------------------------------------------
    def history_start(self, session: Session) -> int:
        """Index of the first step in the history strip: the last ``HISTORY_STRIP`` steps around the current one."""
        return max(0, session.history.index - HISTORY_STRIP + 2)

    def view(self, session: Session, opacity: float = 0.5, labels: bool = True) -> View:
        """What the page shows; ``labels=False`` skips segmenting a step whose labels were left for later."""
        pipe = self.pipeline(session)
        palette = pipe.bundle.palette
        current = self.current_with_labels(session) if labels else session.current
        history = session.history
        start = self.history_start(session)
        strip = []
        for i, step in enumerate(history.steps[start: start + HISTORY_STRIP], start=start):
            marker = "▶ " if i == history.index else ""
            picture = lab.upscale(step.image, max(1, -(-64 // step.image.shape[0])))
            strip.append((picture, f"{marker}{i + 1}. {step.label}"))
        text = (f"Step {history.index + 1} of {len(history.steps)}: **{current.label}**" if current
                else "No picture yet.")
        if current is None:
            return View(None, None, None, None, None, [], strip, text, False, False, start)
        pictures: dict[str, Any] = {"label_picture": None, "overlay": None, "editor": None}
        if current.labels is not None:
            pictures = {
                "label_picture": lab.colorize(current.labels, palette),
                "overlay": lab.overlay(current.image, current.labels, palette, opacity),
                "editor": lab.editor_value(current.labels, palette, self.editor_factor(pipe)),
            }
        return View(current.image, current.labels, active=self.active(session), history=strip, history_text=text,
                    can_undo=history.can_undo, can_redo=history.can_redo, history_start=start, **pictures)

    def overlay(self, session: Session, opacity: float) -> np.ndarray | None:
        current = self.current_with_labels(session)
        if current is None or current.labels is None:
            return None
        return lab.overlay(current.image, current.labels, self.pipeline(session).bundle.palette, opacity)
