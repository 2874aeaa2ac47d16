"""Model bundles on the Hugging Face Hub: ``owner/name[@revision]`` downloaded with ``huggingface_hub``, and
``bundle push`` to upload one.

A bundle repo holds what a bundle folder holds. Downloading reads ``manifest.json`` first and then fetches
only the files it names (the components, the preset vectors, the model card and its preview picture), all
at the commit the manifest came from, into huggingface_hub's cache, so a repo carrying other files (runs,
user vectors, an archive) costs nothing and a second start is offline. ``HF_HUB_OFFLINE=1`` is respected:
the cache is used and nothing is fetched. Private and gated repos need a token (``HF_TOKEN``, e.g. a Space
secret). The discriminator, needed only to continue GAN training, is left out unless asked for.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from editgan_core.bundle import MANIFEST, Bundle, BundleError

HUB_PREFIX = "hf://"
MAX_MANIFEST_BYTES = 1024 * 1024
CARD_FILES = ("README.md", "samples.png")  # the model card and the preview picture it shows
COMPONENTS = ("generator", "encoder", "segmenter", "image_segmenter", "discriminator")
TRAINING_ONLY = ("discriminator",)
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REF = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?:@(?P<revision>[A-Za-z0-9._/-]{{1,200}}))?$")
_GLOB_CHARS = re.compile(r"[*?\[\]]")


@dataclass(frozen=True)
class HubRef:
    """A model repo on the Hub and, optionally, a branch, tag or commit in it."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_hub_ref(text: str) -> HubRef:
    """``[hf://]owner/name[@revision]`` as a ``HubRef``; anything else is a ``BundleError`` saying the form."""
    spec = text.removeprefix(HUB_PREFIX)
    match = _REF.match(spec)
    if match is None or ".." in spec or "--" in match["repo"] or (match["revision"] or "").endswith("/"):
        raise BundleError(f"'{text}' is not a Hub model repo; expected owner/name or owner/name@revision")
    return HubRef(match["repo"], match["revision"])


def hub_ref_or_none(spec: str | Path) -> HubRef | None:
    """The Hub repo a bundle argument means, or None when it names a local folder.

    ``hf://`` always means the Hub. Otherwise only ``owner/name[@revision]`` qualifies, and only when no
    local folder ``owner`` exists, so a mistyped ``checkpoints/face64`` stays a local error instead of a
    network request.
    """
    text = str(spec)
    if text.startswith(HUB_PREFIX):
        return parse_hub_ref(text)
    if isinstance(spec, Path) or not _REF.match(text) or Path(text.split("/", 1)[0]).exists():
        return None
    try:
        return parse_hub_ref(text)
    except BundleError:
        return None


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it, also when it was set after the library was imported."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or value.strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_token(token: str | None = None) -> str | None:
    """The token to send: the one given, else ``HF_TOKEN``, else None (huggingface_hub's stored login)."""
    return token or os.environ.get("HF_TOKEN") or None


# ------------------------------------------------------------------------------------------ the allow-list


def _relative_file(name: object, where: str) -> str:
    """A manifest file entry as a safe repo path: relative, inside the repo, no glob characters."""
    if not isinstance(name, str) or not name.strip():
        raise BundleError(f"the manifest's {where} must be a file name, got {name!r}")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or _GLOB_CHARS.search(name) or ":" in name:
        raise BundleError(f"the manifest's {where} must be a plain path inside the bundle, got '{name}'")
    return str(path)


def manifest_files(manifest: Mapping, *, with_discriminator: bool = False) -> tuple[list[str], list[str]]:
    """(files that must exist, glob patterns for the preset vectors) a bundle's manifest names.

    ``user_vectors`` (vectors saved in a studio) are never part of it.
    """
    files = [MANIFEST]
    for component in COMPONENTS:
        entry = manifest.get(component)
        if not entry or (component in TRAINING_ONLY and not with_discriminator):
            continue
        if not isinstance(entry, Mapping):
            raise BundleError(f"the manifest's '{component}' entry must be an object with a 'file'")
        files.append(_relative_file(entry.get("file"), f"{component} file"))
    vectors = _relative_file(manifest.get("vectors_dir", "vectors"), "vectors_dir").rstrip("/")
    return files, [f"{vectors}/*.safetensors"]


def _read_manifest(path: Path, ref: HubRef) -> dict:
    with open(path, "rb") as f:
        data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{ref}: manifest.json is larger than {MAX_MANIFEST_BYTES // 1024} KB")
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise BundleError(f"{ref}: manifest.json is not JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{ref}: manifest.json is not a JSON object")
    return manifest


# ------------------------------------------------------------------------------------------ downloading


def _explain(ref: HubRef, exc: Exception, offline: bool, token: str | None, action: str = "downloading") -> str:
    """One sentence for the user: what went wrong with ``ref`` and what to do about it."""
    from huggingface_hub import constants, errors

    if isinstance(exc, errors.LocalEntryNotFoundError | errors.OfflineModeIsEnabled):
        if offline:
            return (f"HF_HUB_OFFLINE is set and {ref} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
                    f"start once online to download it, or pass a local bundle folder")
        return f"cannot reach the Hugging Face Hub for {ref} and it is not in the cache ({_first_line(exc)})"
    if isinstance(exc, errors.GatedRepoError):
        return f"{ref.repo_id} is gated: accept its conditions on the Hub and set HF_TOKEN to a token of that account"
    if isinstance(exc, errors.RepositoryNotFoundError):
        access = ("the token given cannot read it" if token else
                  "no token was given: set HF_TOKEN (on a Space, as a secret)")
        return f"no model repo {ref.repo_id} on the Hub, or it is private and {access}"
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"{ref.repo_id} has no branch, tag or commit '{ref.revision}'"
    if isinstance(exc, errors.EntryNotFoundError):
        return f"{ref} has no {MANIFEST}: not an EditGAN bundle repo (upload one with `editgan bundle push`)"
    return f"{action} {ref} failed: {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def download_bundle(ref: HubRef | str, *, token: str | None = None, with_discriminator: bool = False) -> Path:
    """The snapshot folder of a bundle repo, downloading only the files its manifest names (cached).

    Raises ``BundleError`` with the reason (offline and not cached, no such repo or revision, private
    without a token, not a bundle, a named file missing).
    """
    import huggingface_hub as hf
    from huggingface_hub import errors

    ref = parse_hub_ref(ref) if isinstance(ref, str) else ref
    offline, token = is_offline(), hub_token(token)
    common = {"repo_id": ref.repo_id, "token": token, "local_files_only": offline}
    try:
        manifest_path = Path(hf.hf_hub_download(filename=MANIFEST, revision=ref.revision, **common))
        files, vector_patterns = manifest_files(_read_manifest(manifest_path, ref),
                                                with_discriminator=with_discriminator)
        commit = manifest_path.parent.name  # the snapshot folder is named by commit: fetch the rest from it too
        revision = commit if re.fullmatch(r"[0-9a-f]{40}", commit) else ref.revision
        root = Path(hf.snapshot_download(revision=revision, allow_patterns=[*files, *CARD_FILES, *vector_patterns],
                                         **common))
    except (errors.HfHubHTTPError, errors.EntryNotFoundError, errors.OfflineModeIsEnabled, OSError) as exc:
        raise BundleError(f"bundle {ref}: {_explain(ref, exc, offline, token)}") from exc
    missing = [name for name in files if not (root / name).is_file()]
    if missing:
        raise BundleError(f"bundle {ref}: its manifest names {', '.join(missing)}, which the repo does not hold")
    return root


# ------------------------------------------------------------------------------------------ uploading


def push_patterns(bundle: Bundle) -> list[str]:
    """What ``push_bundle`` uploads: the manifest's files (discriminator included), presets and model card."""
    files, vector_patterns = manifest_files(bundle.manifest, with_discriminator=True)
    return [*files, *(name for name in CARD_FILES if (bundle.root / name).is_file()), *vector_patterns]


def push_bundle(bundle: str | Path, repo: str, *, private: bool = False, token: str | None = None,
                message: str | None = None) -> str:
    """Upload a local bundle folder to ``repo`` (``owner/name[@branch]``, created if missing); the commit URL.

    Only the files the manifest names go up, never ``user_vectors``; the folder is checked first.
    """
    import huggingface_hub as hf
    from huggingface_hub import errors

    loaded = Bundle.load(bundle, hub=False)
    ref, token = parse_hub_ref(repo), hub_token(token)
    patterns = push_patterns(loaded)
    missing = [p for p in patterns if "*" not in p and not (loaded.root / p).is_file()]
    if missing:
        raise BundleError(f"bundle '{loaded.id}' names {', '.join(missing)}, which its folder does not hold")
    if is_offline():
        raise BundleError("HF_HUB_OFFLINE is set: unset it to upload a bundle")
    api = hf.HfApi(token=token)
    try:
        api.create_repo(ref.repo_id, private=private, exist_ok=True, repo_type="model")
        if ref.revision:
            api.create_branch(ref.repo_id, branch=ref.revision, exist_ok=True)
        info = api.upload_folder(repo_id=ref.repo_id, folder_path=str(loaded.root), allow_patterns=patterns,
                                 revision=ref.revision, repo_type="model",
                                 commit_message=message or f"EditGAN bundle {loaded.id}")
    except (errors.HfHubHTTPError, OSError) as exc:
        raise BundleError(f"bundle push: {_explain(ref, exc, False, token, 'uploading to')}") from exc
    return str(getattr(info, "commit_url", info))
