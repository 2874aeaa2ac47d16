"""What a bundle can do with the components it has, and what each missing one would unlock.

A bundle grows: it may start as a bare generator (sample, embed by optimisation, apply vectors) and
gain an encoder, a segmentation branch, presets and a discriminator later. The pipeline, the model
card and ``bundle info`` all describe that from this one place, so the UI can grey out what needs a
missing part and say how to add it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


def segmenter_missing_message(bundle_id: str, bundle_path: str = "BUNDLE") -> str:
    return (f"Model '{bundle_id}' has no segmentation branch yet, so it cannot segment, learn edits or refine; "
            f"sampling, embedding and applying vectors work without it. Annotate about 16 images with its classes "
            f"in the studio's section 7 · Annotate and train one there, or from files (NAME.png + NAME.labels.png, "
            f"grey class ids or class colours): python -m "
            f"editgan_core.train.segmenter --bundle {bundle_path} --annotations DIR, or install a trained one: "
            f"python -m editgan_core bundle add-segmenter --bundle {bundle_path} FILE")


@dataclass(frozen=True)
class Capabilities:
    """Which components a bundle has; derived flags say which actions work."""

    bundle_id: str
    has_encoder: bool
    has_segmenter: bool
    has_discriminator: bool
    presets: int
    has_lpips: bool | None = None  # None: not known (a manifest alone cannot say)
    bundle_path: str = "BUNDLE"

    @property
    def can_segment(self) -> bool:
        return self.has_segmenter

    @property
    def can_learn_edits(self) -> bool:
        return self.has_segmenter

    @property
    def fast_embedding(self) -> bool:
        """An encoder gives the embedding a close start; without one it optimises from the average latent."""
        return self.has_encoder

    @property
    def embedding(self) -> str:
        if self.has_encoder:
            return "encoder, then optimisation"
        return "optimisation from the average latent (slower: no encoder)"

    def notes(self) -> list[str]:
        """One sentence per missing component: what it costs and how to add it."""
        return list(self.missing().values())

    def missing(self) -> dict[str, str]:
        """The notes keyed by the missing component ("encoder", "segmenter", "discriminator", "lpips"), so a
        page can show each beside the part it concerns."""
        where = self.bundle_path
        notes: dict[str, str] = {}
        if not self.has_encoder:
            notes["encoder"] = (
                "No encoder: photos are embedded by optimisation from the average latent, which is slower and needs "
                "more steps for the same fidelity. Train one into the bundle with python -m editgan_core.train.encoder "
                f"--bundle {where} --out runs/encoder --data PHOTOS, or install one with python -m editgan_core bundle "
                f"add-encoder --bundle {where} FILE.")
        if not self.has_segmenter:
            notes["segmenter"] = segmenter_missing_message(self.bundle_id, where) + "."
        if not self.has_discriminator:
            notes["discriminator"] = ("No discriminator: the generator cannot be fine-tuned further (train.gan --init "
                                      "needs one); add one with python -m editgan_core bundle add-discriminator "
                                      f"--bundle {where} FILE.")
        if self.has_lpips is False:
            notes["lpips"] = ("No LPIPS (weights not found, or turned off): embedding and edits compare pictures by L2 "
                              "only.")
        return notes

    def as_dict(self) -> dict:
        """JSON-friendly, for the UI and API: the fields, the derived flags and the notes."""
        out = asdict(self)
        out.update(can_segment=self.can_segment, can_learn_edits=self.can_learn_edits,
                   fast_embedding=self.fast_embedding, embedding=self.embedding, notes=self.notes())
        return out
