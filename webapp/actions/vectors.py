"""Section 5 · vectors: the gallery, composing vectors with strengths, refining them, vector files."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from editgan_core.defaults import MAX_STEPS
from editgan_core.pipeline import InputError
from editgan_core.vectors import EditVector, VectorNotFoundError
from editgan_core.vectors.vector import MAX_DEFAULT_SCALE, name_key
from webapp import gpu_tasks
from webapp.actions.base import StudioBase, number_in, whole_number_in
from webapp.outcomes import EditOutcome, Notice, Progress
from webapp.session import ACTIVE_KINDS, Session, Step

MAX_ACTIVE = 6  # vectors composed at once (one strength slider each)
MAX_LIST_CHARS = 4096  # the API's comma-separated names and strengths


def parse_active(names: str | Sequence[str],
                 scales: str | Sequence[float] | None = None) -> list[tuple[str, float | None]]:
    """'smile, look_left' + '1.5, -0.5' -> [('smile', 1.5), ('look_left', -0.5)]; a missing scale means default."""
    if len(names or "") > MAX_LIST_CHARS or len(str(scales or "")) > MAX_LIST_CHARS:
        raise InputError(f"the list of vectors or strengths is over the limit of {MAX_LIST_CHARS} characters")
    if isinstance(names, str):
        names = [n.strip() for n in re.split(r"[,\n]", names)]
    names = [n for n in names if n]
    if scales is None or scales == "":
        values: list[float | None] = []
    elif isinstance(scales, str):
        try:
            parsed = [float(s) for s in re.split(r"[,\s]+", scales.strip()) if s]
        except ValueError as exc:
            raise InputError(f"strengths must be numbers separated by commas, got '{scales[:80]}'") from exc
        values = [number_in(s, "a strength", -MAX_DEFAULT_SCALE, MAX_DEFAULT_SCALE) for s in parsed]
    else:
        values = [number_in(s, "a strength", -MAX_DEFAULT_SCALE, MAX_DEFAULT_SCALE) for s in scales]
    if len(values) > len(names):
        raise InputError(f"{len(values)} strengths for {len(names)} vectors")
    return [(n, values[i] if i < len(values) else None) for i, n in enumerate(names)]


def apply_label(active: Sequence[tuple[str, float]]) -> str:
    """The history label of an "apply" step: 'apply smile×1.5 + look_left×-0.5'."""
    return "apply " + (" + ".join(f"{n}×{s:g}" for n, s in active) if active else "nothing")


def caption(session: Session, vec: EditVector) -> str:
    """A gallery caption: name, where it comes from, and its W+ rows when it is restricted to some."""
    tag = "preset" if vec.source == "preset" or session.library.is_preset(vec.name) else "yours"
    if vec.source == "judge direction":  # InterFaceGAN baseline (eval.interfacegan), shown for comparison
        tag = "judge direction"
    start, stop = vec.layers
    rows = f" · W+ rows {start}–{stop - 1}" if (start, stop) != (0, vec.latent_shape[0]) else ""
    return f"{vec.name} · {tag}{rows}"


class VectorActions(StudioBase):
    def gallery(self, session: Session) -> tuple[list[tuple[np.ndarray, str]], list[str]]:
        """Thumbnails (picture, caption) of every vector in the library, and their names in order."""
        vectors = session.library.list()
        pictures = self.registry.thumbnails.get_many(
            self.pipeline(session), vectors,
            lambda latents: [r.image for r in self.render(session, latents, with_labels=False, tuned=False)])
        items = [(p, caption(session, v)) for p, v in zip(pictures, vectors, strict=True)]
        return items, [v.name for v in vectors]

    def active(self, session: Session) -> list[tuple[str, float]]:
        current = session.current
        """The vectors (name, strength) the current step was made of; a refined step keeps them, so its sliders
        stay and Refine can run again."""
        return list(current.active) if current is not None and current.kind in ACTIVE_KINDS else []

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
        vectors = [(self._library_vector(session, name), scale) for name, scale in items]
        resolved = tuple((v.name, float(v.default_scale if s is None else s)) for v, s in vectors)
        if len({n.lower() for n, _ in resolved}) != len(resolved):
            raise InputError("each vector can be active only once; change its strength instead")
        base = current.base if current.kind in ACTIVE_KINDS and current.base is not None else current.latent
        latent = pipe.apply(base, [(vec, s) for (vec, _), (_, s) in zip(vectors, resolved, strict=True)])
        composed = None
        if resolved:
            composed = EditVector(delta=(latent - base).reshape(pipe.latent_shape),
                                  name=" + ".join(n for n, _ in resolved), bundle_id=session.bundle_id,
                                  class_ids=sorted({c for v, _ in vectors for c in v.class_ids}), source="composed")
        step = self._step(session, "apply", apply_label(resolved), latent, with_labels, base=base, active=resolved,
                          vector=composed)
        # a strength moved after a refinement starts a new step: the refined one stays in the history
        same_set = current.kind == "apply" and [n for n, _ in current.active] == [n for n, _ in resolved]
        return session.history.amend(step) if same_set else session.history.push(step)

    def add_vector(self, session: Session, name: str) -> Step:
        """Make a vector active at its default strength (picked in the gallery)."""
        items: list[tuple[str, float | None]] = list(self.active(session))
        if any(n.lower() == name.lower() for n, _ in items):
            return self._require_current(session)
        if len(items) >= MAX_ACTIVE:
            raise InputError(f"at most {MAX_ACTIVE} vectors can be combined; remove one first")
        return self.apply_vectors(session, [*items, (name, None)])

    def apply_newest(self, session: Session, items: Sequence[tuple[str, float | None]],
                     with_labels: bool = True) -> Step | None:
        """``apply_vectors`` for requests that may overlap in one session (an API client sending strengths
        without waiting): the newest request to arrive wins; None when a newer one has been applied already."""
        ticket = session.strengths.ticket()
        return session.strengths.run(ticket, lambda: self.apply_vectors(session, items, with_labels))

    def set_strengths(self, session: Session, strengths: Sequence[float], with_labels: bool = True) -> Step | None:
        """New strengths for the active vectors (one per slot, in order); ordered like ``apply_newest`` (a slider
        moved quickly sends overlapping changes), and None when a newer change has been applied already."""
        ticket = session.strengths.ticket()

        def change() -> Step:
            current = self._require_current(session)
            items = self.active(session)
            wanted = [number_in(s, "a strength", -MAX_DEFAULT_SCALE, MAX_DEFAULT_SCALE)
                      for s in strengths[: len(items)]]
            if [s for _, s in items] == wanted:
                return current  # nothing changed (the release that ends a drag): no new render
            return self.apply_vectors(session, [(n, s) for (n, _), s in zip(items, wanted, strict=False)],
                                      with_labels)

        return session.strengths.run(ticket, change)

    def remove_vector(self, session: Session, slot: int) -> Step:
        items = self.active(session)
        if not 0 <= slot < len(items):
            return self._require_current(session)
        return self.apply_vectors(session, items[:slot] + items[slot + 1:])

    def refine(self, session: Session, steps: int | None = None,
               keep_parts: bool = False) -> Iterator[Progress | Notice | EditOutcome]:
        """Self-supervised refinement of the active vectors on this picture (EditGAN's 'w/ opt'), after, with
        ``keep_parts``, a one-shot correction so this face's other parts keep their colour and size.

        The refined step keeps the vectors and the picture they were added to, so Refine again (say with more
        steps) starts from them anew rather than failing. ``steps`` defaults to the model's
        (``EditGANPipeline.defaults.refine_steps``).
        """
        pipe = self.require_segmenter(session)
        current = self._require_current(session)
        items = self.active(session)
        if not items or current.base is None:
            raise InputError("add at least one vector from the gallery first; refinement adapts active vectors")
        steps = whole_number_in(pipe.defaults.refine_steps if steps is None else steps,
                                "the number of refinement steps", 0, MAX_STEPS)
        if steps <= 0 and not keep_parts:
            yield Notice("0 refinement steps: the vectors stay applied as they are")
            return
        vectors = [(self._library_vector(session, n), s) for n, s in items]
        base = current.base
        job = gpu_tasks.track(session.new_job())
        result = yield from self._gpu_result(gpu_tasks.refine_task(
            self.gpu_models, session.bundle_id, steps, base, vectors, job, self.preview_every_s,
            self.tuned_weights(session), bool(keep_parts)))
        if result.stopped:
            yield Notice(f"refinement stopped after {result.steps_done} of {steps} steps; kept the best so far")
        names = " + ".join(f"{n}×{s:g}" for n, s in items)
        how = f"refine {result.steps_done} steps" + (", other parts kept" if keep_parts else "")
        refined = EditVector(delta=result.delta, name=f"{names} refined", bundle_id=session.bundle_id,
                             class_ids=result.class_ids, source="refined")
        step = session.history.push(Step("refine", f"{how} ({names})",
                                         result.latent.detach().cpu(), result.render.image, result.render.labels,
                                         base=base, active=tuple(items), vector=refined))
        before = self.render(session, [base], with_labels=False)[0].image
        figures = {k: round(float(v), 4) for k, v in result.metrics.items()}
        figures["steps"] = result.steps_done
        yield EditOutcome(step, before, result.region, result, figures)

    def import_vector(self, session: Session, path: str | Path) -> EditVector:
        """Add a vector file (.safetensors of this project or an official EditGAN .npy) to the library."""
        if not path:
            raise InputError("choose a vector file to import")
        return session.library.import_file(Path(path), check=self.pipeline(session).check_vector)

    def export_vector(self, session: Session, name: str) -> Path:
        if not name:
            raise InputError("choose a vector to export")
        vec = session.library.get(name)
        return session.library.export(vec.name, self._export_dir(session))

    # -- the user's library: rename and delete (presets are read-only)

    def _library_vector(self, session: Session, name: str) -> EditVector:
        """A vector by name; an active one that has left the library since (deleted, or renamed in another
        tab) is named as such, with the way out."""
        try:
            return session.library.get(name)
        except VectorNotFoundError:
            if any(name_key(n) == name_key(name) for n, _ in self.active(session)):
                raise InputError(f"vector '{name}' is no longer in the library (deleted, or renamed in another tab): "
                                 "remove it from the active vectors (its Remove button) to go on") from None
            raise

    def is_preset(self, session: Session, name: str) -> bool | None:
        """Whether ``name`` is a read-only preset; None when no vector has that name."""
        try:
            return session.library.is_preset(name)
        except VectorNotFoundError:
            return None

    def rename_vector(self, session: Session, old: str, new: str) -> EditVector:
        """Rename one of the user's vectors; this session's history follows, so its steps stay adjustable."""
        if not (old or "").strip():
            raise InputError("choose one of your vectors to rename")
        if not (new or "").strip():
            raise InputError("type the vector's new name")
        before = session.library.get(old).name
        vec = session.library.rename(before, new.strip())
        key = name_key(before)

        def renamed(step: Step) -> Step:
            if not any(name_key(n) == key for n, _ in step.active):
                return step
            active = tuple((vec.name if name_key(n) == key else n, s) for n, s in step.active)
            return replace(step, active=active, label=apply_label(active) if step.kind == "apply" else step.label)

        session.history.rewrite(renamed)
        return vec

    def delete_vector(self, session: Session, name: str) -> tuple[str, Notice | None]:
        """Delete one of the user's vectors; returns its name, and a notice when it is active on the current
        picture (its effect stays in the picture, but its strength can no longer be changed)."""
        if not (name or "").strip():
            raise InputError("choose one of your vectors to delete")
        gone = session.library.get(name).name
        session.library.delete(gone)
        if any(name_key(n) == name_key(gone) for n, _ in self.active(session)):
            return gone, Notice(f"'{gone}' is active on the current picture: it stays in the picture, but its strength "
                                "can no longer be changed; remove it from the active vectors to adjust the others")
        return gone, None
