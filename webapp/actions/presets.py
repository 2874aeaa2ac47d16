"""Presets from the user's own edits (section 4), and a small labelled dataset to download (section 7).

Adding a pair and saving a vector touch files only; learning a preset and drawing the dataset use the
models, so they run as GPU tasks (``webapp.gpu_tasks``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from editgan_core.dataset import DatasetReport, zip_dataset
from editgan_core.pipeline import EditGANPipeline, InputError
from editgan_core.preset_pairs import PairError, add_pair, list_presets, preset_folder
from editgan_core.train.preset_pairs import MIN_PAIRS, PresetResult, save_preset_vector
from webapp import gpu_tasks
from webapp.actions.paint import PaintActions
from webapp.outcomes import Notice, Progress
from webapp.session import Session

MAX_STUDIO_DATASET = 64  # larger datasets are a job for the command line (``editgan dataset``)


def preset_choices(pipe: EditGANPipeline) -> list[tuple[str, str]]:
    """(label with the pair count, name) of the model's presets that have pairs, for a dropdown."""
    return [(f"{name} ({count} pairs)", name) for name, count in list_presets(pipe.bundle).items()]


@dataclass
class DatasetOutcome:
    zip_path: Path
    report: DatasetReport


class PresetActions(PaintActions):
    def preset_names(self, session: Session) -> list[tuple[str, str]]:
        return preset_choices(self.pipeline(session))

    def _pair_to_add(self, session: Session, value: Mapping[str, object] | np.ndarray | None):
        """The painting on the canvas if it changes the current picture, else the latest learned edit's."""
        current = self._require_labelled(session)
        if value is not None:
            paint = self.read_paint(session, value)
            if paint.changed_pixels:
                return current.latent, paint.labels, "the painting on the canvas"
        if session.last_paint is not None:
            return *session.last_paint, "the edit learnt last"
        raise InputError("paint a change on the label map (step 3) or learn an edit first, then add it to a preset")

    def add_to_preset(self, session: Session, name: str, value: Mapping[str, object] | np.ndarray | None) -> str:
        """Keep (latent, painted labels) as an example of preset ``name``; says how many it has now."""
        pipe = self.require_segmenter(session)
        if not (name or "").strip():
            raise InputError("choose a preset or type a new preset name")
        latent, labels, what = self._pair_to_add(session, value)
        try:
            path = add_pair(pipe.bundle, name, pipe.check_latent(latent).cpu(), pipe.check_labels(labels),
                            source={"step": session.current.label if session.current else ""})
        except PairError as exc:
            raise InputError(str(exc)) from exc
        count = list_presets(pipe.bundle).get(path.parent.name, 0)
        more = (f"add {MIN_PAIRS - count} more to learn it" if count < MIN_PAIRS
                else "ready to learn (8 or more pairs generalise best)")
        return f"Added {what} to preset **{path.parent.name}**: {count} pair(s), {more}."

    def learn_preset(self, session: Session, name: str, steps: int | None = None, keep_parts: bool = True
                     ) -> Iterator[Progress | Notice | PresetResult]:
        """Learn preset ``name``'s shared vector from its pairs and save it into this model's vectors
        (``keep_parts``: corrected so the parts it should not touch keep their colour and size)."""
        pipe = self.require_segmenter(session)
        if not (name or "").strip():
            raise InputError("choose the preset to learn")
        try:
            folder = preset_folder(pipe.bundle, name)
        except PairError as exc:
            raise InputError(str(exc)) from exc
        pairs = list_presets(pipe.bundle).get(folder.name, 0)
        steps = max(1, int(pipe.defaults.edit_steps if steps is None else steps))
        job = gpu_tasks.track(session.new_job())
        try:
            result = yield from self._gpu_result(gpu_tasks.preset_task(
                self.gpu_models, session.bundle_id, steps, pairs, folder.name, job, self.preview_every_s,
                bool(keep_parts)))
            if result.vector.extra.get("stopped"):
                yield Notice(f"learning stopped after {result.vector.extra['steps']} of {steps} steps; the best "
                             "vector so far is saved")
            for line in result.skipped:
                yield Notice(f"pair {line}; left out")
            saved = save_preset_vector(pipe, result.vector)
        except PairError as exc:
            raise InputError(str(exc)) from exc
        yield replace(result, vector=saved)

    def dataset_zip(self, session: Session, n: int) -> Iterator[Progress | Notice | DatasetOutcome]:
        """Draw ``n`` labelled samples (``editgan_core.dataset``), yield their zip's path."""
        self.require_segmenter(session)
        n = int(n)
        if not 1 <= n <= MAX_STUDIO_DATASET:
            raise InputError(f"the studio makes 1 to {MAX_STUDIO_DATASET} samples; use `editgan dataset` for more")
        folder = session.workdir / "datasets" / f"{len(list((session.workdir / 'datasets').glob('*'))):03d}"
        folder.mkdir(parents=True)
        job = gpu_tasks.track(session.new_job())
        report = yield from self._gpu_result(gpu_tasks.dataset_task(self.gpu_models, session.bundle_id, n,
                                                                    str(folder / "dataset"), job))
        if report.stopped:
            yield Notice(f"stopped after {report.written} of {n} samples; the zip holds those")
        if report.failed:
            yield Notice(f"{len(report.failed)} sample(s) had no confident draw and are missing")
        yield DatasetOutcome(zip_dataset(folder / "dataset", folder / f"dataset-{n}.zip"), report)
