"""Model bundles: ``checkpoints/<name>/manifest.json`` plus safetensors files.

A bundle is everything one domain needs: generator, segmentation ensemble, encoder, class names
and colours, edit groups and shipped editing vectors. The manifest names its files, so a bundle
can be copied, zipped or hosted as one folder (diffusers' ``from_pretrained`` idea).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import numpy as np
import torch

from editgan_core import __version__
from editgan_core.defaults import RuntimeDefaults
from editgan_core.model_card import CARD_FILE, render_card, write_card
from editgan_core.models.checkpoint import load_generator, read_torch_file
from editgan_core.models.encoder import Encoder
from editgan_core.models.image_segmenter import ImageSegmenter, mismatch
from editgan_core.models.segmenter import PixelEnsemble
from editgan_core.models.serialization import CheckpointError, read_metadata
from editgan_core.models.stylegan2 import Discriminator, Generator
from editgan_core.paths import checkpoint_dirs
from editgan_core.photos.framing import Framing, FramingError, parse_framing
from editgan_core.utils import atomic_write, file_sha256

FORMAT = "editgan-bundle/1"
log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
T = TypeVar("T")
# The StyleGAN2 projector's initial learning rate; a bundle may name its own (manifest "embedding").
DEFAULT_EMBED_LR = 0.1


DEFAULT_ORDER = 100  # listing_order of a bundle whose manifest does not set one


class BundleError(ValueError):
    """A bundle folder that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class PartClass:
    id: int
    name: str
    color: tuple[int, int, int]

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.color)


@dataclass
class Bundle:
    """A loaded manifest; models are read on demand with ``load_*``."""

    root: Path
    manifest: dict
    classes: list[PartClass] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def title(self) -> str:
        return self.manifest.get("title", self.id)

    @property
    def resolution(self) -> int:
        return int(self.manifest["resolution"])

    @property
    def domain(self) -> str | None:
        return self.manifest.get("domain")

    def domain_module(self) -> ModuleType:
        """The procedural domain this bundle was trained on (its renders are ground truth for benchmarks)."""
        if not self.domain:
            raise BundleError(f"bundle '{self.id}' names no procedural domain in its manifest")
        from editgan_core.domains import get_domain

        return get_domain(self.domain)

    @property
    def palette(self) -> np.ndarray:
        return np.array([c.color for c in self.classes], dtype=np.uint8)

    @property
    def edit_groups(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in self.manifest.get("edit_groups", {}).items()}

    @property
    def embed_lr(self) -> float:
        """Peak Adam learning rate for embedding photos into this bundle's W+."""
        entry = self.manifest.get("embedding") or {}
        lr = entry.get("lr", DEFAULT_EMBED_LR) if isinstance(entry, dict) else entry
        if not isinstance(lr, int | float) or isinstance(lr, bool) or not 0 < lr < 10:
            raise BundleError(f"bundle '{self.id}': embedding lr must be a number in (0, 10), got {lr!r}")
        return float(lr)

    @property
    def defaults(self) -> RuntimeDefaults:
        """Step counts and the edit learning rate used when a caller names none (manifest "defaults")."""
        try:
            return RuntimeDefaults.from_manifest(self.manifest.get("defaults"))
        except ValueError as exc:
            raise BundleError(f"bundle '{self.id}': {exc}") from exc

    @property
    def framing(self) -> Framing:
        """How photos are brought to this model's framing (manifest "framing"; see ``photos.framing``)."""
        try:
            return parse_framing(self.manifest.get("framing"), self.resolution)
        except FramingError as exc:
            raise BundleError(f"bundle '{self.id}': {exc}") from exc

    @property
    def background(self) -> tuple[int, int, int]:
        """The colour transparent photo pixels are laid on (manifest "background"; white when none is given)."""
        value = self.manifest.get("background", [255, 255, 255])
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255
                                                                     for v in value)):
            raise BundleError(f"bundle '{self.id}': background must be [r, g, b] in 0..255, got {value!r}")
        return value[0], value[1], value[2]

    @property
    def vectors_dir(self) -> Path:
        return self.root / self.manifest.get("vectors_dir", "vectors")

    def has(self, component: str) -> bool:
        return bool(self.manifest.get(component))

    def _file(self, component: str) -> Path:
        entry = self.manifest.get(component)
        if not entry:
            raise BundleError(f"bundle '{self.id}' has no {component}")
        path = self.root / entry["file"]
        if not path.is_file():
            raise BundleError(f"bundle '{self.id}' lists {entry['file']} but the file is missing")
        return path

    @classmethod
    def load(cls, path: str | Path, *, hub: bool = True) -> Bundle:
        """Open a bundle folder, a name in the checkpoint folders or (with ``hub``) a Hub repo; see
        ``resolve_bundle_path``."""
        root = resolve_bundle_path(path, hub=hub)
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"cannot read {root / MANIFEST}: {exc}") from exc
        if manifest.get("format") != FORMAT:
            raise BundleError(f"{root / MANIFEST} is not an EditGAN bundle manifest ({FORMAT})")
        for key in ("id", "resolution", "generator", "classes"):
            if key not in manifest:
                raise BundleError(f"{root / MANIFEST} lacks '{key}'")
        classes = [PartClass(int(c["id"]), str(c["name"]), tuple(int(v) for v in c["color"]))
                   for c in manifest["classes"]]
        if [c.id for c in classes] != list(range(len(classes))):
            raise BundleError("bundle classes must have ids 0..C-1 in order")
        bundle = cls(root=root, manifest=manifest, classes=classes)
        bundle.embed_lr  # noqa: B018 -- a bad value is reported when the bundle is opened, not at the first embedding
        bundle.defaults  # noqa: B018 -- likewise
        bundle.framing, bundle.background  # noqa: B018 -- likewise
        return bundle

    def model_card(self) -> str:
        """The card shown to users: the folder's README.md, or one generated from the manifest if it has none."""
        path = self.root / CARD_FILE
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
        return render_card(self.root, self.manifest)

    def write_model_card(self) -> Path:
        """Regenerate README.md from the manifest and the preset files (notes below its marker are kept)."""
        return write_card(self.root, self.manifest)

    # -- components ----------------------------------------------------------------------------
    def _load(self, component: str, loader: Callable[[Path], T]) -> T:
        """``loader(file)``, frozen and in eval mode, with a bad file reported as this bundle's error."""
        try:
            return loader(self._file(component))
        except CheckpointError as exc:
            raise BundleError(f"bundle '{self.id}': {exc}") from exc

    def load_generator(self) -> Generator:
        return self.load_generator_and_average()[0]

    def load_generator_and_average(self) -> tuple[Generator, torch.Tensor | None]:
        """The generator and the average w stored with it (the source checkpoint's own), or None."""
        return self._load("generator", load_generator)

    def load_segmenter(self) -> PixelEnsemble:
        return self._load("segmenter", PixelEnsemble.load)

    def load_encoder(self) -> Encoder:
        return self._load("encoder", Encoder.load)

    def load_image_segmenter(self) -> ImageSegmenter:
        """The pixel segmenter distilled from the segmentation branch (``train.image_segmenter``), checked to
        read this bundle's classes at its resolution."""
        model = self._load("image_segmenter", ImageSegmenter.load)
        branch = self.manifest["image_segmenter"].get("branch_sha256")
        if branch and self.has("segmenter") and file_sha256(self._file("segmenter")) != branch:
            log.warning("bundle '%s': its image segmenter was distilled from an earlier segmentation branch; "
                        "retrain it (python -m editgan_core.train.image_segmenter --replace)", self.id)
        why = mismatch(model, len(self.classes), self.resolution)
        if why:
            raise BundleError(f"bundle '{self.id}': {why}: train it again "
                              "(python -m editgan_core.train.image_segmenter --replace)")
        return model


def resolve_bundle_path(path: str | Path, *, hub: bool = True) -> Path:
    """The folder of a bundle given as a path, as a name in the checkpoint folders (``editgan_core.paths``)
    or, with ``hub``, as a Hugging Face Hub repo ``[hf://]owner/name[@revision]`` (downloaded and cached:
    ``editgan_core.hub``). Local folders win over a repo of the same spelling; ``hf://`` forces the Hub."""
    from editgan_core import hub as hub_mod

    ref = hub_mod.hub_ref_or_none(path)
    dirs = checkpoint_dirs()
    if not str(path).startswith(hub_mod.HUB_PREFIX):
        for root in (Path(path), *(d / str(path) for d in dirs)):
            if (root / MANIFEST).is_file():
                return root
    if ref is not None and hub:
        return hub_mod.download_bundle(ref)
    if ref is not None:
        raise BundleError(f"'{path}' names a Hub repo, but this changes a bundle in place: it needs a local folder")
    looked = ", ".join(str(d) for d in dirs)
    raise BundleError(f"no bundle at '{path}' (looked for {MANIFEST} there and in {looked}; a Hub repo is "
                      f"written owner/name[@revision] or hf://owner/name)")


def listing_order(folder: Path) -> int:
    """A bundle's place in listings (the studio starts on the first): its manifest's ``order``, lower first.

    The shipped demo bundles set it so the default does not depend on folder names (``faces128`` sorts
    before ``faces64``); a manifest without it, or one that cannot be read, comes after them.
    """
    try:
        return int(json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("order", DEFAULT_ORDER))
    except (OSError, ValueError, TypeError, AttributeError):
        return DEFAULT_ORDER


def list_bundles(root: Path | None = None) -> list[Path]:
    """Bundle folders under ``root`` (default: every checkpoint folder) by ``listing_order``, then name;
    hidden ones are skipped (``bundle create`` builds in a hidden folder)."""
    roots = [root] if root is not None else checkpoint_dirs()
    found = [p.parent for r in roots for p in sorted(r.glob(f"*/{MANIFEST}")) if not p.parent.name.startswith(".")]
    return sorted(dict.fromkeys(found), key=listing_order)


def write_manifest(root: Path, manifest: dict) -> Path:
    """Write the manifest atomically, then refresh the model card from it (README.md)."""
    # Bookkeeping keys are always rewritten, so a manifest read back from disk can be passed as is.
    manifest = {"format": FORMAT, **{k: v for k, v in manifest.items() if k not in ("format", "updated")}}
    manifest.setdefault("versions", {})["editgan_core"] = __version__
    manifest["updated"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    path = atomic_write(root / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))
    write_card(root, manifest)
    return path


def build_from_run(run: Path, out: Path, bundle_id: str, title: str, domain: str | None, classes: list[dict],
                   edit_groups: dict[str, list[int]]) -> Bundle:
    """Start a bundle from a GAN training run folder (``generator_ema.safetensors``)."""
    src = run / "generator_ema.safetensors"
    if not src.is_file():
        raise BundleError(f"{run} has no generator_ema.safetensors (is it a training run folder?)")
    try:
        generator, _ = load_generator(src)
        run_meta = read_metadata(src)
    except CheckpointError as exc:
        raise BundleError(str(exc)) from exc
    out.mkdir(parents=True, exist_ok=True)
    generator.save(out / "generator.safetensors", metadata=run_meta)
    disc = export_discriminator(run, out / "discriminator.safetensors", run_meta)
    existing = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).is_file() else {}
    manifest = {
        **existing, "id": bundle_id, "title": title, "domain": domain, "resolution": generator.size,
        "latent_shape": [generator.n_latent, generator.style_dim],
        "generator": {"file": "generator.safetensors", "images_seen": int(run_meta.get("images_seen", 0))},
        "discriminator": {"file": disc.name, "note": "lets training continue: train.gan --init"} if disc else None,
        "classes": classes, "edit_groups": edit_groups, "vectors_dir": "vectors",
    }
    write_manifest(out, manifest)
    samples = sorted((run / "samples").glob("*.png"))
    if samples:
        shutil.copyfile(samples[-1], out / "samples.png")
    return Bundle.load(out)


def export_discriminator(run: Path, dest: Path, metadata: dict[str, str]) -> Path | None:
    """Copy the run's discriminator (exported, or read from its checkpoint) so training can continue."""
    src = run / "discriminator.safetensors"
    if src.is_file():
        shutil.copyfile(src, dest)
        return dest
    path = run / "checkpoint.pt"
    if not path.is_file():
        return None
    try:  # a run from before discriminator.safetensors was exported: train.gan's config gives the architecture
        ckpt = read_torch_file(path)
        config = json.loads(ckpt["config"])
        disc = Discriminator.from_state({"size": config["size"], "channels": config["channels"]}, ckpt["d"],
                                        f"discriminator in {path}")
    except (CheckpointError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read the discriminator in {path}: {exc}") from exc
    return disc.save(dest, metadata)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create or update a model bundle from a GAN training run.")
    parser.add_argument("--run", type=Path, required=True, help="GAN training run folder")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder, e.g. checkpoints/faces64")
    parser.add_argument("--id", required=True)
    parser.add_argument("--title", default=None)
    parser.add_argument("--domain", default="faces", help="procedural domain that supplies classes and edit groups")
    from editgan_core.cli_common import setup_logging

    setup_logging()
    args = parser.parse_args(argv)
    from editgan_core.domains import get_domain

    domain = get_domain(args.domain)
    classes = [{"id": c.id, "name": c.name, "color": list(c.color)} for c in domain.CLASSES]
    groups = {k: list(v) for k, v in getattr(domain, "EDIT_CLASSES", {}).items()}
    bundle = build_from_run(args.run, args.out, args.id, args.title or args.id, args.domain, classes, groups)
    print(f"wrote {bundle.root} ({bundle.resolution}px, {len(bundle.classes)} classes)")


if __name__ == "__main__":
    main()
