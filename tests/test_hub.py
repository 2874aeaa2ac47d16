"""Bundles from the Hugging Face Hub, offline: a stand-in for the Hub serves repos from local folders into a
cache laid out as huggingface_hub lays it out, and the real library then reads that cache offline."""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
from pathlib import Path

import httpx
import huggingface_hub
import pytest
from huggingface_hub import constants, errors

from editgan_core import cli, hub
from editgan_core.bundle import MANIFEST, Bundle, BundleError, resolve_bundle_path
from editgan_core.pipeline import EditGANPipeline

SECRET = "hf_secret_token"


def _http_error(cls: type[Exception], status: int) -> Exception:
    return cls(f"{status} Client Error", response=httpx.Response(status, request=httpx.Request("GET", "https://hub")))


class FakeHub:
    """Repos as local folders (one commit each), downloads into a huggingface_hub-style cache, calls recorded."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.repos: dict[str, tuple[Path, str, bool]] = {}  # repo id -> (folder, commit, private)
        self.calls: list[tuple[str, dict]] = []
        self.fetched: list[str] = []

    def add(self, repo_id: str, folder: Path, private: bool = False) -> str:
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        self.repos[repo_id] = (folder, commit, private)
        return commit

    def _snapshot(self, repo_id: str, commit: str) -> Path:
        return self.cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit

    def _repo(self, repo_id: str, revision: str | None, token: str | None, local_only: bool) -> tuple[Path, str]:
        if local_only:
            refs = self.cache / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
            commit = refs.read_text() if refs.is_file() else revision
            if commit and self._snapshot(repo_id, commit).is_dir():
                return self._snapshot(repo_id, commit), commit
            raise errors.LocalEntryNotFoundError("cannot find the requested files in the local cache")
        if repo_id not in self.repos or (self.repos[repo_id][2] and token != SECRET):
            raise _http_error(errors.RepositoryNotFoundError, 401)
        folder, commit, _ = self.repos[repo_id]
        if revision not in (None, "main", "v1", commit):
            raise _http_error(errors.RevisionNotFoundError, 404)
        return folder, commit

    def _fetch(self, repo_id: str, folder: Path, commit: str, name: str) -> None:
        dest = self._snapshot(repo_id, commit) / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, dest)
        refs = self.cache / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(commit)
        self.fetched.append(name)

    def hf_hub_download(self, repo_id: str, filename: str, *, revision=None, token=None, local_files_only=False,
                        **kwargs) -> str:
        self.calls.append(("file", {"repo_id": repo_id, "filename": filename, "revision": revision, "token": token,
                                    "local_files_only": local_files_only}))
        folder, commit = self._repo(repo_id, revision, token, local_files_only)
        if local_files_only:
            if not (folder / filename).is_file():
                raise errors.LocalEntryNotFoundError("not cached")
            return str(folder / filename)
        if not (folder / filename).is_file():
            raise _http_error(errors.RemoteEntryNotFoundError, 404)
        self._fetch(repo_id, folder, commit, filename)
        return str(self._snapshot(repo_id, commit) / filename)

    def snapshot_download(self, repo_id: str, *, revision=None, allow_patterns=None, token=None,
                          local_files_only=False, **kwargs) -> str:
        self.calls.append(("snapshot", {"repo_id": repo_id, "revision": revision, "token": token,
                                        "allow_patterns": list(allow_patterns or []),
                                        "local_files_only": local_files_only}))
        folder, commit = self._repo(repo_id, revision, token, local_files_only)
        if not local_files_only:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                name = path.relative_to(folder).as_posix()
                if any(fnmatch.fnmatch(name, pattern) for pattern in allow_patterns or ["*"]):
                    self._fetch(repo_id, folder, commit, name)
        return str(self._snapshot(repo_id, commit))


@pytest.fixture(scope="module")
def tiny_repo(tiny_bundle: Path, tmp_path_factory) -> Path:
    """A bundle repo as it may look on the Hub: the bundle plus files that must not be downloaded."""
    root = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("repo") / "tiny"))
    (root / "user_vectors").mkdir()
    (root / "user_vectors" / "mine.safetensors").write_bytes(b"not for download")
    (root / "runs").mkdir()
    (root / "runs" / "checkpoint.pt").write_bytes(b"x" * 1000)
    (root / "discriminator.safetensors").write_bytes(b"only for training")
    manifest = Bundle.load(root).manifest
    manifest["discriminator"] = {"file": "discriminator.safetensors"}
    (root / MANIFEST).write_text(__import__("json").dumps(manifest))
    return root


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(tmp_path / "hf-cache")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(fake.cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./owner folder that would make a repo id look local
    return fake


@pytest.mark.parametrize(("text", "repo", "revision"), [
    ("someone/faces", "someone/faces", None),
    ("someone/faces@v1", "someone/faces", "v1"),
    ("some-org/faces.v2@refs/pr/3", "some-org/faces.v2", "refs/pr/3"),
    ("hf://someone/faces@0123abcd", "someone/faces", "0123abcd"),
])
def test_repo_ids_and_revisions_parse(text: str, repo: str, revision: str | None) -> None:
    assert hub.parse_hub_ref(text) == hub.HubRef(repo, revision)


@pytest.mark.parametrize("text", ["faces", "a/b/c", "/abs/path", "-x/y", "x/y@", "x/../y", "x--y/z", "x/y@a b"])
def test_malformed_repo_ids_are_refused(text: str) -> None:
    with pytest.raises(BundleError, match="not a Hub model repo"):
        hub.parse_hub_ref(text)


def test_local_folders_are_never_taken_for_repos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    assert hub.hub_ref_or_none("checkpoints/face64") is None  # a typo stays a local error, no network
    assert hub.hub_ref_or_none("someone/faces") == hub.HubRef("someone/faces")
    assert hub.hub_ref_or_none(Path("someone/faces")) is None
    with pytest.raises(BundleError, match="no bundle at 'checkpoints/face64'"):
        resolve_bundle_path("checkpoints/face64")


def test_only_the_manifests_files_are_downloaded_at_one_commit(fake_hub: FakeHub, tiny_repo: Path) -> None:
    commit = fake_hub.add("someone/tiny", tiny_repo)
    root = resolve_bundle_path("someone/tiny@v1")
    assert root == fake_hub.cache / "models--someone--tiny" / "snapshots" / commit
    assert sorted(fake_hub.fetched) == sorted([MANIFEST, MANIFEST, "README.md", "encoder.safetensors",
                                               "generator.safetensors", "segmenter.safetensors",
                                               "vectors/look_left.safetensors", "vectors/smile.safetensors"])
    (kind, first), (kind2, second) = fake_hub.calls
    assert (kind, first["filename"], first["revision"]) == ("file", MANIFEST, "v1")  # the manifest first ...
    assert kind2 == "snapshot" and second["revision"] == commit  # ... then its files, from the same commit
    assert "vectors/*.safetensors" in second["allow_patterns"]
    assert not any("user_vectors" in p or "discriminator" in p for p in second["allow_patterns"])
    pipe = EditGANPipeline.from_pretrained("someone/tiny@v1", lpips=False)
    assert pipe.bundle.root == root and pipe.capabilities.presets


def test_commands_that_change_a_bundle_take_local_folders_only(fake_hub: FakeHub, tiny_repo: Path) -> None:
    fake_hub.add("someone/tiny", tiny_repo)
    with pytest.raises(BundleError, match="names a Hub repo, but this changes a bundle in place"):
        Bundle.load("someone/tiny", hub=False)
    assert cli.main(["bundle", "card", "--bundle", "someone/tiny"]) == 1 and fake_hub.calls == []


def test_discriminator_on_request_and_missing_files_named(fake_hub: FakeHub, tiny_repo: Path, tmp_path: Path) -> None:
    fake_hub.add("someone/tiny", tiny_repo)
    root = hub.download_bundle("someone/tiny", with_discriminator=True)
    assert (root / "discriminator.safetensors").is_file()
    broken = tmp_path / "broken"
    shutil.copytree(tiny_repo, broken)
    (broken / "encoder.safetensors").unlink()
    fake_hub.add("someone/broken", broken)
    with pytest.raises(BundleError, match=r"names .*encoder\.safetensors, which the repo does not hold"):
        resolve_bundle_path("someone/broken")


def test_a_repo_without_manifest_or_with_unsafe_names_is_refused(fake_hub: FakeHub, tmp_path: Path,
                                                                 tiny_repo: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "model.bin").write_bytes(b"0")
    fake_hub.add("someone/plain", tmp_path / "plain")
    with pytest.raises(BundleError, match=r"has no manifest\.json: not an EditGAN bundle repo"):
        Bundle.load("someone/plain")
    evil = tmp_path / "evil"
    shutil.copytree(tiny_repo, evil)
    manifest = Bundle.load(evil).manifest
    for bad in ("../../outside.safetensors", "*.safetensors"):
        manifest["encoder"] = {"file": bad}
        (evil / MANIFEST).write_text(__import__("json").dumps(manifest))
        fake_hub.add("someone/evil", evil)
        with pytest.raises(BundleError, match="must be a plain path inside the bundle"):
            Bundle.load("someone/evil")


def test_private_repos_need_the_token_and_get_it(fake_hub: FakeHub, tiny_repo: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub.add("someone/private", tiny_repo, private=True)
    with pytest.raises(BundleError, match="private and no token was given: set HF_TOKEN"):
        Bundle.load("someone/private")
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(BundleError, match="the token given cannot read it"):
        Bundle.load("someone/private")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert Bundle.load("someone/private").id == "tiny-test"
    assert {call["token"] for _, call in fake_hub.calls[-2:]} == {SECRET}


def test_unknown_revision_is_named(fake_hub: FakeHub, tiny_repo: Path) -> None:
    fake_hub.add("someone/tiny", tiny_repo)
    with pytest.raises(BundleError, match="has no branch, tag or commit 'nope'"):
        Bundle.load("someone/tiny@nope")


def test_offline_uses_the_cache_and_refuses_what_is_not_there(fake_hub: FakeHub, tiny_repo: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub.add("someone/tiny", tiny_repo)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BundleError, match="HF_HUB_OFFLINE is set and someone/tiny is not in the Hugging Face cache"):
        Bundle.load("someone/tiny")
    assert all(call["local_files_only"] for _, call in fake_hub.calls)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    online = resolve_bundle_path("someone/tiny")  # fills the cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub.fetched.clear()
    assert resolve_bundle_path("someone/tiny") == online and fake_hub.fetched == []


def test_the_real_library_reads_the_cache_offline(fake_hub: FakeHub, tiny_repo: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache the stand-in wrote is read by huggingface_hub itself, with no network."""
    fake_hub.add("someone/tiny", tiny_repo)
    online = resolve_bundle_path("someone/tiny")
    monkeypatch.undo()  # the genuine functions again ...
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(fake_hub.cache))  # ... on the stand-in's cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(fake_hub.cache.parent)
    assert resolve_bundle_path("someone/tiny") == online
    with pytest.raises(BundleError, match="HF_HUB_OFFLINE is set and someone/other"):
        resolve_bundle_path("someone/other")


def test_push_uploads_the_bundle_but_not_user_vectors(tiny_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, dict] = {}

    class FakeApi:
        def __init__(self, token=None) -> None:
            calls["api"] = {"token": token}

        def create_repo(self, repo_id, **kwargs):
            calls["create"] = {"repo_id": repo_id, **kwargs}

        def create_branch(self, repo_id, **kwargs):
            calls["branch"] = {"repo_id": repo_id, **kwargs}

        def upload_folder(self, **kwargs):
            calls["upload"] = kwargs
            return type("Commit", (), {"commit_url": "https://hub/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert cli.main(["bundle", "push", "--bundle", str(tiny_repo), "--repo", "someone/tiny@dev", "--private"]) == 0
    assert calls["api"]["token"] == SECRET
    assert calls["create"]["private"] is True and calls["branch"]["branch"] == "dev"
    upload = calls["upload"]
    assert upload["repo_id"] == "someone/tiny" and upload["revision"] == "dev"
    files = sorted(p.relative_to(tiny_repo).as_posix() for p in tiny_repo.rglob("*") if p.is_file())
    sent = [f for f in files if any(fnmatch.fnmatch(f, p) for p in upload["allow_patterns"])]
    assert sent == ["README.md", "discriminator.safetensors", "encoder.safetensors", "generator.safetensors",
                    MANIFEST, "segmenter.safetensors", "vectors/look_left.safetensors", "vectors/smile.safetensors"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["bundle", "push", "--bundle", str(tiny_repo), "--repo", "someone/tiny"]) == 1
