"""The bundle's model card: a short README.md generated from its manifest and preset files.

Written whenever a manifest is written (``bundle.write_manifest``), so every command that builds or
grows a bundle leaves a current card; the text is a pure function of the manifest and the vector
files, so regenerating an unchanged bundle gives the same card. Text a user adds below the notes
marker survives regeneration.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from editgan_core.capabilities import Capabilities
from editgan_core.utils import atomic_write
from editgan_core.vectors import EditVector, VectorError, load_vector

log = logging.getLogger(__name__)

CARD_FILE = "README.md"
SAMPLES_FILE = "samples.png"
NOTES_MARKER = "<!-- Notes below this line are kept when the card is regenerated. -->"
COMPONENTS = (("generator", "generator"), ("encoder", "encoder"), ("segmenter", "segmentation branch"),
              ("discriminator", "discriminator"), ("image_segmenter", "pixel segmenter (edit objective)"))
MAX_PRESETS_LISTED = 200

# How a component entry's provenance keys read in the card; unknown keys are shown as "key: value".
DETAILS = {
    "trained": "trained {}", "kimg": "{:g} kimg of training", "images": "trained on {} images",
    "real_images": "real images: {}", "annotations": "trained on {} annotated images",
    "members": "{}-member ensemble", "class_balance": "class balance {}",
    "embed_psnr": "annotations embedded at {:.1f} dB PSNR", "eval_miou": "held-out mIoU {:.3f}",
    "check_psnr": "encoder-only {:.1f} dB PSNR on generator samples", "mean_latent_psnr": "average latent {:.1f} dB",
    "source_file": "from {}", "note": "{}", "w_avg": "average w (truncation centre): {}",
    "grown_from": "grown from {} with its layers held (train.gan --freeze-grown)",
    "distilled_from": "distilled from the {} on generator samples", "samples": "{} samples", "steps": "{} steps",
    "held_out": "checked on {} held-out samples", "agreement_miou": "agreement mIoU {:.3f}",
}
SCALED_DETAILS = {"images_seen": (1000, "{:.0f} k images seen in training"), "parameters": (1e6, "{:.2f} M parameters")}
SKIPPED_KEYS = {"file", "agreement_per_class", "seconds", "branch_sha256"}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def describe_entry(entry: dict) -> str:
    """A component's provenance and figures as one line."""
    parts = []
    for key, value in entry.items():
        if key in SKIPPED_KEYS or value in (None, ""):
            continue
        try:
            if key in SCALED_DETAILS:
                scale, template = SCALED_DETAILS[key]
                text = template.format(float(value) / scale) if value else ""
            else:
                text = DETAILS.get(key, key + ": {}").format(value)
        except (TypeError, ValueError):
            text = f"{key}: {value}"
        if text:
            parts.append(text)
    return "; ".join(parts)


def read_presets(vectors_dir: Path, bundle_id: str) -> tuple[list[EditVector], list[str]]:
    """The bundle's shipped vectors, and the names of files that could not be read."""
    vectors, unreadable = [], []
    for path in sorted(vectors_dir.glob("*.safetensors"))[:MAX_PRESETS_LISTED] if vectors_dir.is_dir() else []:
        try:
            vectors.append(load_vector(path, expect_bundle_id=bundle_id))
        except VectorError as exc:
            log.warning("model card: skipping %s: %s", path.name, exc)
            unreadable.append(path.name)
    return vectors, unreadable


def capabilities_of(manifest: dict, presets: int, bundle_path: str = "BUNDLE") -> Capabilities:
    return Capabilities(bundle_id=str(manifest.get("id")), has_encoder=bool(manifest.get("encoder")),
                        has_segmenter=bool(manifest.get("segmenter")),
                        has_discriminator=bool(manifest.get("discriminator")), presets=presets,
                        bundle_path=bundle_path)


def _overview(root: Path, manifest: dict) -> list[str]:
    shape = manifest.get("latent_shape") or ["?", "?"]
    res = manifest.get("resolution", "?")
    rows = [("Bundle id", f"`{manifest.get('id')}`"), ("Resolution", f"{res} × {res} px"),
            ("Latent (W+)", f"{shape[0]} × {shape[1]}"),
            ("Classes", f"{len(manifest.get('classes', []))}, {len(manifest.get('edit_groups', {}))} edit groups")]
    source = manifest.get("source")
    if source:
        origin = f"`{source.get('file')}` ({source.get('format', 'unknown format')})"
        if source.get("sha256"):
            origin += f", sha256 `{source['sha256'][:16]}…`"
        rows.append(("Source checkpoint", origin))
        if source.get("url"):
            rows.append(("Source URL", source["url"]))
        rows.append(("Licence", source.get("license") or "not given: check the source's terms before sharing"))
    elif manifest.get("domain"):
        rows.append(("Source", f"trained by this project on the procedural `{manifest['domain']}` domain"))
    lines = ["| | |", "| --- | --- |", *[f"| {k} | {_cell(v)} |" for k, v in rows], ""]
    if (root / SAMPLES_FILE).is_file():
        lines += [f"![samples]({SAMPLES_FILE})", ""]
    return lines


def _abilities(caps: Capabilities) -> list[str]:
    yes_no = {True: "yes", False: "not yet"}
    lines = ["## What it can do", "",
             "- Sample, render and apply editing vectors: yes",
             f"- Embed photos: {caps.embedding}",
             f"- Segment, paint and learn edits: {yes_no[caps.can_learn_edits]}",
             f"- Preset vectors: {caps.presets}",
             f"- Discriminator, to continue GAN training: {yes_no[caps.has_discriminator]}", ""]
    notes = caps.notes()
    if notes:
        lines += ["To unlock more:", "", *[f"- {n}" for n in notes], ""]
    return lines


def _components(manifest: dict) -> list[str]:
    lines = ["## Components", "", "| component | file | how it was made, figures |", "| --- | --- | --- |"]
    for key, label in COMPONENTS:
        entry = manifest.get(key)
        if isinstance(entry, dict) and entry.get("file"):
            lines.append(f"| {label} | `{_cell(entry['file'])}` | {_cell(describe_entry(entry))} |")
        else:
            lines.append(f"| {label} | none | |")
    return [*lines, ""]


# train.presets methods that learn from rendered true edits
TRUE_TARGET_METHODS = ("pairs", "pairs_median", "pairs_fit", "pairs_distil")


def _vector_provenance(v: EditVector) -> list[str]:
    """How a vector was made, as the card's last column says it."""
    extra = v.extra or {}
    made = [v.description] if v.description else []
    if isinstance(extra.get("seeds"), list):
        steps = f", {extra['steps']} steps" if "steps" in extra else ""
        method = f", train.presets --method {extra['method']}" if "method" in extra else ""
        if extra.get("method") in TRUE_TARGET_METHODS:
            method += " (from the renderer's true targets, not painted maps)"
        made.append(f"learned on {len(extra['seeds'])} images together{steps}{method}")
    if extra.get("carried_from"):
        made.append(f"carried over from {extra['carried_from']} (the same W space; zero on the new layers' styles)")
    if isinstance(extra.get("strength_iou"), dict):
        made.append("default scale: the one that best redraws its paintings")
    if isinstance(extra.get("side_effects"), dict):
        kept = extra["side_effects"]
        where = (" --part-masks renderer: colours kept on the renderer's exact part maps"
                 if kept.get("part_masks") == "renderer" else "")
        if kept.get("sizes_and_places"):
            where += (f", every part's size and centroid on its true edit's change (--place-weight "
                      f"{kept.get('place_weight')})")
        made.append(f"corrected so other parts keep colour and size (train.presets --keep-side-effects{where})")
    if isinstance(extra.get("held_attributes"), dict):
        held = ", ".join(f"{name} {coefficient:+g}" for name, coefficient in extra["held_attributes"].items())
        made.append(f"other attributes held still with their renderer-pair directions ({held} at the default "
                    "strength)")
    if extra.get("original_file"):
        made.append(f"imported from {extra['original_file']}")
    for key, label in (("region_iou", "region IoU"), ("change_outside", "change outside")):
        if isinstance(extra.get(key), int | float):
            made.append(f"{label} {extra[key]:.3f}")
    return made


def _presets(vectors: list[EditVector], unreadable: list[str], names: dict[int, str]) -> list[str]:
    if not vectors and not unreadable:
        return []
    lines = ["## Preset vectors", "", "| name | classes | default scale | how it was made, figures |",
             "| --- | --- | --- | --- |"]
    for v in vectors:
        classes = ", ".join(names.get(c, str(c)) for c in v.class_ids) or "any"
        made = "; ".join(_vector_provenance(v))
        lines.append(f"| {_cell(v.name)} | {_cell(classes)} | {v.default_scale:g} | {_cell(made)} |")
    lines += [f"| {_cell(name)} | | | unreadable: not offered |" for name in unreadable]
    return [*lines, ""]


def _classes(manifest: dict) -> list[str]:
    groups: dict[int, list[str]] = {}
    for group, ids in manifest.get("edit_groups", {}).items():
        for i in ids:
            groups.setdefault(int(i), []).append(group)
    lines = ["## Classes", ""]
    if manifest.get("classes_description"):
        lines += [manifest["classes_description"], ""]
    lines += ["| id | name | colour | edit groups |", "| --- | --- | --- | --- |"]
    for c in manifest.get("classes", []):
        colour = "#{:02x}{:02x}{:02x}".format(*c["color"])
        lines.append(f"| {c['id']} | {_cell(c['name'])} | `{colour}` | {_cell(', '.join(groups.get(c['id'], [])))} |")
    return [*lines, ""]


def _history(manifest: dict) -> list[str]:
    history = manifest.get("history") or []
    if not history:
        return []
    lines = ["## History", "", "| when (UTC) | what |", "| --- | --- |"]
    lines += [f"| {_cell(h.get('when', ''))} | {_cell(h.get('event', ''))} |" for h in history]
    return [*lines, ""]


def display_path(root: Path) -> str:
    """How commands in the card name the bundle: relative to the working folder when inside it."""
    root = Path(root).absolute()
    try:
        return str(root.relative_to(Path.cwd()))
    except ValueError:
        return str(root)


def render_card(root: Path, manifest: dict, shown_as: str | None = None) -> str:
    """The generated part of the card (ends with the notes marker); ``shown_as`` names the bundle in commands."""
    vectors, unreadable = read_presets(root / manifest.get("vectors_dir", "vectors"), str(manifest.get("id")))
    caps = capabilities_of(manifest, len(vectors), shown_as or display_path(root))
    names = {int(c["id"]): str(c["name"]) for c in manifest.get("classes", [])}
    version = (manifest.get("versions") or {}).get("editgan_core", "?")
    lines = [f"# {manifest.get('title') or manifest.get('id')}", "",
             f"EditGAN studio model bundle, card generated by editgan_core {version} from `manifest.json` "
             f"(updated {manifest.get('updated', '?')}).", ""]
    for section in (_overview(root, manifest), _abilities(caps), _components(manifest),
                    _presets(vectors, unreadable, names), _classes(manifest), _history(manifest)):
        lines += section
    return "\n".join([*lines, NOTES_MARKER, ""])


def write_card(root: Path, manifest: dict, shown_as: str | None = None) -> Path:
    """(Re)write ``README.md``, keeping whatever follows the notes marker in the current one."""
    path = Path(root) / CARD_FILE
    notes = ""
    if path.is_file():
        _, marker, tail = path.read_text(encoding="utf-8", errors="replace").partition(NOTES_MARKER)
        notes = tail.lstrip("\n") if marker else ""
    text = render_card(Path(root), manifest, shown_as) + notes
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
