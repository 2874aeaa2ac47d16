"""Section 6 · history and export: undo, redo, reset, jump back, and the files of the current step."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from editgan_core.latents import LatentFile, save_latent
from editgan_core.pipeline import InputError
from editgan_core.vectors import VectorError, save_vector
from webapp import labels as lab
from webapp.actions.base import StudioBase
from webapp.actions.photo import photo_exports
from webapp.session import Session, Step


class HistoryActions(StudioBase):
    def undo(self, session: Session) -> Step | None:
        return session.history.undo()

    def redo(self, session: Session) -> Step | None:
        return session.history.redo()

    def reset(self, session: Session) -> Step | None:
        self._require_current(session)
        return session.history.reset()

    def goto(self, session: Session, index: int) -> Step | None:
        return session.history.goto(index)

    def export(self, session: Session) -> list[Path]:
        """Current picture and label map (PNG), its latent, the edited full-size photo (when an aligned photo was
        embedded) and the vector that made the step (safetensors): the files of the step shown, also after undo
        or a jump back."""
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
        files += photo_exports(pipe, session, current, folder, stem)  # the full-size photo, if one was aligned
        if current.vector is not None:
            try:
                files.append(save_vector(current.vector, folder / f"{stem}-vector.safetensors"))
            except VectorError as exc:  # never lose the other files over the vector
                raise InputError(f"could not write the vector: {exc}") from exc
        return files
