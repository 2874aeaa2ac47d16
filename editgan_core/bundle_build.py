"""Building and growing bundles: what ``python -m editgan_core bundle create | add-*`` do.

``create`` builds the whole bundle in a hidden folder beside the target and renames it into place,
so neither a reader nor the studio's model picker ever sees half a bundle, and a failure leaves
nothing behind. ``add-*`` read the new component and check it against the bundle (latent shape,
feature widths, classes) before anything is written, save the checked object under the
component's name by rename, then rewrite the manifest by rename: a crash between the two leaves
a bundle whose files are all valid.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError

from editgan_core.bundle import MANIFEST, Bundle, BundleError, list_bundles, write_manifest
from editgan_core.bundle_classes import ClassSpec, resolve_class
from editgan_core.formats import editgan_official
from editgan_core.losses import psnr
from editgan_core.model_card import SAMPLES_FILE, display_path, write_card
from editgan_core.models.checkpoint import (
    ImportedCheckpoint,
    detect_format,
    import_checkpoint,
    load_generator,
    read_torch_file,
    resolve_generator_file,
    save_generator,
)
from editgan_core.models.encoder import Encoder
from editgan_core.models.image_segmenter import ImageSegmenter, mismatch
from editgan_core.models.segmenter import PixelEnsemble
from editgan_core.models.serialization import CONFIG_KEY, CheckpointError, read_metadata, read_safetensors
from editgan_core.models.stylegan2 import MEAN_LATENT_SAMPLES, Discriminator, Generator
from editgan_core.pipeline import EditGANPipeline
from editgan_core.utils import file_sha256, save_image_grid
from editgan_core.vectors import EditVector, VectorError, import_npy, load_vector, sanitize_name, save_vector

log = logging.getLogger(__name__)

MAX_HISTORY = 100
ENCODER_MARGIN_DB = 1.0  # a trained encoder beats the average latent by far more (demo: docs/results.md)
BUNDLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# What reading an untrusted model file can raise; each becomes a BundleError naming the file.
READ_ERRORS = (CheckpointError, SafetensorError, ValueError, TypeError, KeyError, OSError, RuntimeError, EOFError,
               pickle.UnpicklingError)


# -- shared steps ------------------------------------------------------------------------------


def check_bundle_id(bundle_id: str) -> str:
    if not BUNDLE_ID.fullmatch(bundle_id or ""):
        raise BundleError(f"bundle id {bundle_id!r} must be 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return bundle_id


def add_history(manifest: dict, event: str) -> None:
    """Append one line to the manifest's history (the card's last table); the oldest drop after MAX_HISTORY."""
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    manifest["history"] = [*manifest.get("history", []), {"when": when, "event": event}][-MAX_HISTORY:]


def _open(bundle: str | Path | Bundle) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else Bundle.load(bundle, hub=False)  # grown in place: local only


def _input_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{what} file not found: {path}")
    return path


def _refuse_replace(bundle: Bundle, component: str, force: bool) -> None:
    if bundle.has(component) and not force:
        raise BundleError(f"bundle '{bundle.id}' already has a {component} ({bundle.manifest[component]['file']}); "
                          "pass --force to replace it")


def _commit(bundle: Bundle, component: str | None, entry: dict | None, event: str) -> Bundle:
    manifest = dict(bundle.manifest)
    if component:
        manifest[component] = entry
    add_history(manifest, event)
    write_manifest(bundle.root, manifest)
    return Bundle.load(bundle.root)


def _verb(bundle: Bundle, component: str) -> str:
    return "replaced" if bundle.has(component) else "added"


# -- create ------------------------------------------------------------------------------------


def read_generator(source: str | Path) -> tuple[Path, ImportedCheckpoint]:
    """The generator file (a folder's generator, or the file itself) and what it holds, or a BundleError."""
    try:
        path = resolve_generator_file(source)
        return path, import_checkpoint(path)
    except READ_ERRORS as exc:
        raise BundleError(f"{Path(source).name} is not a usable StyleGAN2 generator: {exc}") from exc


def source_info(path: Path, source_format: str, license_text: str | None, url: str | None) -> dict:
    """Where the generator came from, for the card: file name, format, size, sha256, URL and licence."""
    info = {"file": path.name, "format": source_format, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
    info.update({k: v for k, v in (("url", url), ("license", license_text)) if v})
    return info


def _check_target(out: Path, bundle_id: str, force: bool) -> None:
    if out.exists():
        if not force:
            raise BundleError(f"{out} already exists; pass --force to replace it")
        if not out.is_dir() or (not (out / MANIFEST).is_file() and any(out.iterdir())):
            raise BundleError(f"{out} exists and is not a bundle folder; refusing to replace it, even with --force")
    if out.parent.is_dir():
        for other in list_bundles(out.parent):
            if other.resolve() == out.resolve():
                continue
            try:
                other_id = json.loads((other / MANIFEST).read_text()).get("id")
            except (OSError, ValueError):
                continue
            if other_id == bundle_id:
                raise BundleError(f"bundle id '{bundle_id}' is already used by {other}; choose another with --id")


def _swap_in(stage: Path, out: Path) -> None:
    """Rename the finished folder into place; an old bundle (--force) is moved aside first and removed last."""
    if not out.exists():
        os.replace(stage, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(out, old)
    try:
        os.replace(stage, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_round_trip(path: Path, generator: Generator, w_avg: torch.Tensor | None) -> None:
    written, written_avg = load_generator(path)
    theirs = written.state_dict()
    same_avg = (written_avg is None) == (w_avg is None) and (w_avg is None or torch.equal(written_avg, w_avg))
    if (written.config != generator.config or not same_avg
            or any(not torch.equal(v, theirs[k]) for k, v in generator.state_dict().items())):
        raise BundleError(f"{path.name} does not read back identically to the source generator")


def _w_avg_note(imported: ImportedCheckpoint) -> str | None:
    """Where the stored average w (the truncation centre) came from, for the manifest and the card."""
    if imported.w_avg is None:
        return None
    return imported.metadata.get("w_avg") or "the checkpoint's own (latent_avg)"


def preview_grid(bundle_dir: Path, count: int = 8, max_side: int = 256) -> Path:
    """Samples (top row) and, when the bundle can segment, their label maps (bottom row): the card's picture."""
    pipeline = EditGANPipeline.from_pretrained(bundle_dir, lpips=False)
    renders = [pipeline.render(pipeline.sample_latent(seed)) for seed in range(count)]
    rows = [(r.image, Image.Resampling.LANCZOS) for r in renders]
    if pipeline.can_segment:
        rows += [(pipeline.bundle.palette[r.labels], Image.Resampling.NEAREST) for r in renders]
    if renders[0].image.shape[0] > max_side:
        rows = [(np.asarray(Image.fromarray(im).resize((max_side, max_side), how)), how) for im, how in rows]
    return save_image_grid(np.stack([im for im, _ in rows]), bundle_dir / SAMPLES_FILE, nrow=count)


def create_bundle(generator_file: str | Path, spec: ClassSpec, out: str | Path, *, bundle_id: str | None = None,
                  title: str | None = None, license_text: str | None = None, source_url: str | None = None,
                  force: bool = False, samples: int = 6) -> Bundle:
    """A new bundle from a generator checkpoint and a validated class list; everything is checked first."""
    out = Path(out)
    bundle_id = check_bundle_id(bundle_id or out.name)
    _check_target(out, bundle_id, force)
    if not 0 <= samples <= 32:
        raise BundleError(f"samples must be 0-32, got {samples}")
    path, imported = read_generator(generator_file)
    generator, disc = imported.generator, imported.discriminator
    manifest = {
        "id": bundle_id, "title": title or bundle_id, "domain": None, "resolution": generator.size,
        "latent_shape": [generator.n_latent, generator.style_dim],
        "generator": {"file": "generator.safetensors", "source_file": path.name,
                      "parameters": sum(p.numel() for p in generator.parameters()), "w_avg": _w_avg_note(imported)},
        "source": source_info(path, imported.source_format, license_text, source_url), **spec.manifest_entries(),
        "vectors_dir": "vectors",
    }
    if disc is not None:
        manifest["discriminator"] = {"file": "discriminator.safetensors", "source_file": path.name,
                                     "note": "lets training continue: train.gan --init"}
    add_history(manifest, f"created from {path.name} ({len(spec.classes)} classes"
                          f"{', with its discriminator' if disc is not None else ''})")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        os.chmod(stage, 0o755)  # mkdtemp makes private folders; bundles are meant to be shared
        w_avg = None if imported.w_avg is None else imported.w_avg.reshape(1, -1).float()
        save_generator(generator, stage / "generator.safetensors", w_avg, metadata={"source": path.name})
        _check_round_trip(stage / "generator.safetensors", generator, w_avg)
        if disc is not None:
            disc.save(stage / "discriminator.safetensors", metadata={"source": path.name})
        (stage / "vectors").mkdir()
        write_manifest(stage, manifest)
        if samples:
            preview_grid(stage, samples)
        write_card(stage, Bundle.load(stage).manifest, shown_as=display_path(out))
        _swap_in(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("created bundle %s at %s", bundle_id, out)
    return Bundle.load(out)


# -- encoder -----------------------------------------------------------------------------------


@torch.no_grad()
def encoder_check(generator: Generator, encoder: Encoder, count: int = 4) -> dict[str, float]:
    """Encoder-only PSNR on a few generator samples next to the average latent's.

    An encoder trained for another generator (or not at all) does no better than the average latent.
    """
    rng = torch.Generator().manual_seed(0)
    w_avg = generator.mean_latent(MEAN_LATENT_SAMPLES, rng)
    noise = generator.stored_noise()
    scores, baseline = [], []
    for _ in range(count):  # one at a time: a 1024-px batch would need several GB
        w = w_avg + 0.7 * (generator.style(torch.randn(1, generator.style_dim, generator=rng)) - w_avg)
        image = generator.synthesis(generator.w_to_wplus(w), noise=noise).image
        scores.append(psnr(generator.synthesis(encoder(image), noise=noise).image, image))
        baseline.append(psnr(generator.synthesis(generator.w_to_wplus(w_avg), noise=noise).image, image))
    return {"check_psnr": round(torch.cat(scores).mean().item(), 2),
            "mean_latent_psnr": round(torch.cat(baseline).mean().item(), 2)}


def add_encoder(bundle: str | Path | Bundle, file: str | Path, *, force: bool = False,
                provenance: dict | None = None) -> Bundle:
    """Install an encoder (``Encoder.save`` format) after checking it predicts this bundle's W+."""
    bundle = _open(bundle)
    _refuse_replace(bundle, "encoder", force)
    path = _input_file(file, "encoder")
    try:
        encoder = Encoder.load(path)
        metadata = {k: v for k, v in read_metadata(path).items() if k != CONFIG_KEY}
    except READ_ERRORS as exc:
        raise BundleError(f"{path.name} is not an encoder saved by this project (Encoder.save): {exc}") from exc
    generator = bundle.load_generator()
    want = (generator.n_latent, generator.style_dim)
    if (encoder.n_latent, encoder.style_dim) != want:
        raise BundleError(f"{path.name} predicts W+ latents of {encoder.n_latent} x {encoder.style_dim}, but bundle "
                          f"'{bundle.id}' uses {want[0]} x {want[1]}: it was trained for another generator")
    figures = encoder_check(generator, encoder.eval())
    if figures["check_psnr"] < figures["mean_latent_psnr"] + ENCODER_MARGIN_DB:
        log.warning("%s reconstructs generator samples no better than the average latent (%.1f vs %.1f dB): "
                    "is it trained, and for this generator?", path.name, figures["check_psnr"],
                    figures["mean_latent_psnr"])
    verb = _verb(bundle, "encoder")
    encoder.save(bundle.root / "encoder.safetensors", metadata=metadata)
    entry = {"file": "encoder.safetensors", **(provenance or {}), "source_file": path.name, **figures}
    return _commit(bundle, "encoder", entry, f"encoder {verb} from {path.name}")


def install_image_segmenter(bundle: str | Path | Bundle, model: ImageSegmenter, figures: dict) -> Bundle:
    """Write a distilled pixel segmenter (``train.image_segmenter``) into the bundle with its figures."""
    bundle = _open(bundle)
    why = mismatch(model, len(bundle.classes), bundle.resolution)
    if why:
        raise BundleError(f"bundle '{bundle.id}': {why}")
    verb = _verb(bundle, "image_segmenter")
    model.save(bundle.root / "image_segmenter.safetensors")
    entry = {"file": "image_segmenter.safetensors", "distilled_from": "segmentation branch", **figures,
             "branch_sha256": file_sha256(bundle._file("segmenter"))}  # a retrained branch makes it stale
    return _commit(bundle, "image_segmenter", entry, f"image segmenter {verb} (agreement mIoU "
                                                     f"{figures.get('agreement_miou', float('nan')):.3f})")


# -- segmenter ---------------------------------------------------------------------------------


def _read_segmenter(paths: Sequence[Path], feature_channels: list[int]) -> PixelEnsemble:
    if len(paths) == 1 and paths[0].suffix == ".safetensors":
        return PixelEnsemble.load(paths[0])
    if any(p.suffix == ".safetensors" for p in paths):
        raise BundleError("give one .safetensors segmenter, or the official ensemble's member files (.pth)")
    return editgan_official.load_segmenter(paths, feature_channels)


def add_segmenter(bundle: str | Path | Bundle, files: Sequence[str | Path], *, force: bool = False,
                  annotations: int | None = None, note: str | None = None) -> Bundle:
    """Install a segmentation branch: this project's ``.safetensors`` or the official EditGAN member files."""
    bundle = _open(bundle)
    _refuse_replace(bundle, "segmenter", force)
    paths = [_input_file(f, "segmenter") for f in files]
    if not paths:
        raise BundleError("no segmenter file given")
    generator = bundle.load_generator()
    widths = generator.feature_channels()
    try:
        ensemble = _read_segmenter(paths, widths)
    except READ_ERRORS as exc:
        raise BundleError(f"{paths[0].name}: not a usable segmenter: {exc}") from exc
    if ensemble.feature_channels != widths:
        raise BundleError(f"{paths[0].name} reads generator feature maps of widths {ensemble.feature_channels} "
                          f"(d={ensemble.dim}), but the generator of bundle '{bundle.id}' gives {widths} "
                          f"(d={sum(widths)}): it was trained for another generator")
    if ensemble.num_classes != len(bundle.classes):
        raise BundleError(f"{paths[0].name} predicts {ensemble.num_classes} classes, but bundle '{bundle.id}' has "
                          f"{len(bundle.classes)} ({', '.join(c.name for c in bundle.classes[:6])}, ...): "
                          "it was trained with another class list")
    verb = _verb(bundle, "segmenter")
    ensemble.save(bundle.root / "segmenter.safetensors")
    entry = {"file": "segmenter.safetensors", "members": len(ensemble.members), "annotations": annotations,
             "source_file": ", ".join(p.name for p in paths), "note": note}
    return _commit(bundle, "segmenter", {k: v for k, v in entry.items() if v is not None},
                   f"segmentation branch {verb} from {entry['source_file']}")


# -- discriminator -----------------------------------------------------------------------------


def read_discriminator(path: Path, generator: Generator) -> Discriminator:
    """A discriminator from a snapshot or training checkpoint (converted by the importer), or a state dict.

    A bare state dict is built with its file's stored config, else with the generator's widths and clamp.
    """
    kind = detect_format(path)
    obj = read_torch_file(path) if kind == "torch" else {}
    if kind == "pickle" or "g_ema" in obj:
        disc = import_checkpoint(path).discriminator
        if disc is None:
            raise BundleError(f"{path.name} holds no discriminator")
        return disc
    if kind == "safetensors":
        state, metadata = read_safetensors(path)
        config = Discriminator.config_in(metadata, path.name) if CONFIG_KEY in metadata else None
    else:
        state, config = obj.get("d", obj), None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleError(f"{path.name} holds no discriminator state dict of tensors")
    if config is None:
        config = {"size": generator.size, "channels": generator.channels, "conv_clamp": generator.config["conv_clamp"]}
    return Discriminator.from_state(config, state, f"discriminator {path.name}")


def add_discriminator(bundle: str | Path | Bundle, file: str | Path, *, force: bool = False) -> Bundle:
    """Install the discriminator that lets ``train.gan --init`` continue training the bundle's generator."""
    bundle = _open(bundle)
    _refuse_replace(bundle, "discriminator", force)
    path = _input_file(file, "discriminator")
    generator = bundle.load_generator()
    widths = {r: c for r, c in generator.channels.items() if r <= generator.size}
    needs = (f"bundle '{bundle.id}' needs one matching its {generator.size}-px generator's resolution and "
             f"widths {widths}")
    try:
        disc = read_discriminator(path, generator)
    except READ_ERRORS as exc:
        raise BundleError(f"{path.name} is not a usable discriminator ({needs}): {exc}") from exc
    size = disc.config["size"]
    found = {r: c for r, c in disc.channels.items() if r <= size}
    if size != generator.size or found != widths:
        raise BundleError(f"{path.name} is a {size}-px discriminator with widths {found}, but {needs}")
    verb = _verb(bundle, "discriminator")
    disc.save(bundle.root / "discriminator.safetensors", metadata={"source": path.name})
    entry = {"file": "discriminator.safetensors", "note": "lets training continue: train.gan --init",
             "source_file": path.name}
    return _commit(bundle, "discriminator", entry, f"discriminator {verb} from {path.name}")


# -- presets -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PresetOptions:
    """Overrides for imported presets; class refs are ids or names."""

    name: str | None = None
    classes: tuple[str | int, ...] | None = None
    scale: float | None = None
    description: str | None = None


def _read_preset(bundle: Bundle, path: Path, shape: tuple[int, int], opts: PresetOptions) -> EditVector:
    if path.suffix.lower() == ".npy":
        vector = import_npy(path, bundle.id, shape, name=opts.name)
    else:
        vector = load_vector(path, expect_bundle_id=bundle.id, expect_shape=shape)
    refs = list(opts.classes) if opts.classes is not None else vector.class_ids
    class_ids = [resolve_class(ref, bundle.classes) for ref in refs]
    if None in class_ids:
        raise BundleError(f"{path.name}: class references {refs} do not all name classes of bundle '{bundle.id}' "
                          f"(ids 0..{len(bundle.classes) - 1} or class names)")
    changes: dict = {"source": "preset", "name": sanitize_name(opts.name or vector.name), "class_ids": class_ids}
    if opts.scale is not None:
        changes["default_scale"] = opts.scale
    if opts.description is not None:
        changes["description"] = opts.description
    return dataclasses.replace(vector, **changes)


def add_presets(bundle: str | Path | Bundle, files: Sequence[str | Path], *, force: bool = False,
                options: PresetOptions | None = None) -> Bundle:
    """Install preset vectors (this project's ``.safetensors`` or official ``.npy``); all are checked first."""
    bundle = _open(bundle)
    opts = options or PresetOptions()
    paths = [_input_file(f, "vector") for f in files]
    if not paths or (opts.name and len(paths) > 1):
        raise BundleError("give one or more vector files (--name needs exactly one)")
    shape = tuple(bundle.manifest.get("latent_shape") or ())
    if len(shape) != 2:
        generator = bundle.load_generator()
        shape = (generator.n_latent, generator.style_dim)
    try:
        vectors = [_read_preset(bundle, p, shape, opts) for p in paths]
    except VectorError as exc:
        raise BundleError(str(exc)) from exc
    existing = {p.stem.casefold(): p for p in bundle.vectors_dir.glob("*.safetensors")}
    seen: set[str] = set()
    for v in vectors:
        key = v.name.casefold()
        if key in seen or (key in existing and not force):
            where = "twice among the files" if key in seen else f"already in {existing[key].name}"
            raise BundleError(f"a preset named '{v.name}' is {where}; rename it with --name or pass --force")
        seen.add(key)
    for v in vectors:
        target = save_vector(v, bundle.vectors_dir / f"{v.name}.safetensors")
        old = existing.get(v.name.casefold())  # the same name in other letter case: one preset, one file
        if old is not None and old.exists() and not old.samefile(target):
            old.unlink()
    return _commit(bundle, None, None, f"presets added: {', '.join(v.name for v in vectors)}")
