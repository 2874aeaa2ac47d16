"""A bundle's vectors by name: the user's own (one writable folder) over the bundle's read-only presets.

Several web sessions and several processes (studio workers, the CLI) may use one folder at once.
Every operation holds the folder's lock — a thread lock inside this process, ``filelock`` across
processes — and lists the folder afresh (re-reading only files that changed), so a name checked
free is still free when the file is written and a rename or delete is seen whole or not at all.
Files are written atomically.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import filelock

from editgan_core.vectors.fileformat import (
    NPY_MAGIC,
    SUFFIX,
    check_expected,
    load_vector,
    read_vector_file,
    save_vector,
    vector_from_bytes,
    vector_from_npy_bytes,
)
from editgan_core.vectors.vector import (
    MAX_NAME_CHARS,
    EditVector,
    VectorError,
    VectorNotFoundError,
    name_key,
    sanitize_name,
)

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
LOCK_TIMEOUT_S = 30.0  # a library operation takes milliseconds; waiting longer means a stuck process


def _created_key(created: str) -> datetime:
    """Sort key for ``created``; unparseable stamps sort first rather than breaking the list."""
    try:
        dt = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return datetime.min.replace(tzinfo=timezone.utc)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


_Parsed = dict[Path, tuple[tuple[int, int, int], EditVector]]  # file -> (inode, mtime, size) it was read at


@dataclass
class _Entry:
    vec: EditVector
    path: Path
    preset: bool


class FolderLock:
    """Turns on one library folder: threads of this process through an RLock, processes through a lock file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._threads = threading.RLock()
        self._file = filelock.FileLock(root / LOCK_FILE, timeout=LOCK_TIMEOUT_S)

    @contextmanager
    def hold(self, write: bool) -> Iterator[None]:
        with self._threads:
            locked = self._acquire(write)
            try:
                yield
            finally:
                if locked:
                    self._file.release()

    def _acquire(self, write: bool) -> bool:
        """Take the file lock; a reader of a folder that does not exist or cannot be written goes unlocked,
        as nobody can be changing it through this library. Messages leave out the server's paths (logged)."""
        try:
            if write:
                self.root.mkdir(parents=True, exist_ok=True)
            elif not self.root.is_dir():
                return False
            self._file.acquire()
        except filelock.Timeout as exc:
            log.warning("vector folder %s: lock held by another process for %.0f s", self.root, LOCK_TIMEOUT_S)
            raise VectorError("the vector library is busy (another process is using it); try again") from exc
        except OSError as exc:
            if not write:
                return False
            log.warning("vector folder %s cannot be written: %s", self.root, exc)
            raise VectorError(f"the vector library cannot be written ({exc.strerror or exc}); the server's "
                              "EDITGAN_HOME should name a writable folder") from exc
        return True


_ROOT_LOCKS: dict[str, FolderLock] = {}
_ROOT_LOCKS_GUARD = threading.Lock()


def _lock_for(root: Path) -> FolderLock:
    """One lock per folder, shared by every library object on it (one per web session is typical)."""
    key = os.path.normcase(str(root.resolve()))
    with _ROOT_LOCKS_GUARD:
        return _ROOT_LOCKS.setdefault(key, FolderLock(root))


class VectorLibrary:
    """The user's vectors for one bundle (a writable folder) plus the bundle's read-only presets."""

    def __init__(
        self,
        root: str | Path,
        bundle_id: str,
        latent_shape: Sequence[int],
        read_only_roots: Sequence[str | Path] = (),
    ) -> None:
        self.root = Path(root)
        self.bundle_id = bundle_id
        self.latent_shape = (int(latent_shape[0]), int(latent_shape[1]))
        self.read_only_roots = [Path(p) for p in read_only_roots]
        self.problems: list[tuple[Path, str]] = []  # files skipped by the last list(), with the reason
        self._lock = _lock_for(self.root)
        self._parsed: _Parsed = {}

    # -- reading

    def _read(self, path: Path, parsed: _Parsed) -> EditVector:
        """``load_vector``, reused while the file is unchanged: a page asks for the list often (the
        gallery checks every name), and every write makes a new file (a new inode)."""
        st = path.stat()
        version = (st.st_ino, st.st_mtime_ns, st.st_size)
        known = self._parsed.get(path)
        vec = known[1] if known is not None and known[0] == version else load_vector(
            path, self.bundle_id, self.latent_shape)
        parsed[path] = (version, vec)
        return vec

    def _scan(self) -> builtins.list[_Entry]:
        problems: list[tuple[Path, str]] = []
        presets: list[_Entry] = []
        users: list[_Entry] = []
        parsed: _Parsed = {}
        folders = [(p, True) for p in self.read_only_roots] + [(self.root, False)]
        for folder, preset in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob(f"*{SUFFIX}")):
                if path.name.startswith(".") or not path.is_file():
                    continue
                try:
                    vec = self._read(path, parsed)
                    clean = sanitize_name(vec.name)
                except VectorError as exc:
                    problems.append((path, str(exc)))
                    continue
                except OSError as exc:  # gone since listed: presets are read without the lock
                    problems.append((path, exc.strerror or str(exc)))
                    continue
                except Exception as exc:  # one bad file must not take the library (and the app) down
                    problems.append((path, f"unreadable ({type(exc).__name__})"))
                    continue
                if clean != vec.name:
                    vec = dataclasses.replace(vec, name=clean)
                (presets if preset else users).append(_Entry(vec, path, preset))
        self._parsed = parsed
        presets.sort(key=lambda e: name_key(e.vec.name))
        users.sort(key=lambda e: (_created_key(e.vec.created), name_key(e.vec.name)))
        entries: list[_Entry] = []
        seen: dict[str, Path] = {}
        for e in presets + users:
            key = name_key(e.vec.name)
            if key in seen:
                problems.append((e.path, f"name '{e.vec.name}' is already used by '{seen[key].name}'; skipped"))
                continue
            seen[key] = e.path
            entries.append(e)
        for path, why in problems:
            log.warning("skipping vector file %s: %s", path, why)
        self.problems = problems
        return entries

    def _find(self, entries: builtins.list[_Entry], name: str) -> _Entry:
        key = name_key(sanitize_name(name))
        for e in entries:
            if name_key(e.vec.name) == key:
                return e
        raise VectorNotFoundError(f"no vector named '{name}' for bundle '{self.bundle_id}'")

    def list(self) -> builtins.list[EditVector]:  # builtins: `list` is this method inside the class
        """Presets first (by name), then the user's vectors oldest first; bad files land in ``problems``."""
        with self._lock.hold(write=False):
            return [e.vec for e in self._scan()]

    def get(self, name: str) -> EditVector:
        """The vector called ``name`` (case-insensitive)."""
        with self._lock.hold(write=False):
            return self._find(self._scan(), name).vec

    def is_preset(self, name: str) -> bool:
        """Whether ``name`` is one of the bundle's shipped, read-only vectors."""
        with self._lock.hold(write=False):
            return self._find(self._scan(), name).preset

    # -- writing (callers hold the lock for writing)

    def _path_for(self, name: str) -> Path:
        path = self.root / f"{name}{SUFFIX}"
        if path.parent != self.root or Path(name).name != name:  # sanitize_name makes this impossible; be sure
            raise VectorError(f"'{name}' is not usable as a vector name")
        return path

    def _clash(
        self, entries: builtins.list[_Entry], name: str, ignore: _Entry | None = None
    ) -> _Entry | Path | None:
        key = name_key(name)
        for e in entries:
            if e is not ignore and name_key(e.vec.name) == key:
                return e
        path = self._path_for(name)
        if path.exists() and not (ignore is not None and _same_file(path, ignore.path)):
            return path
        return None

    def _drop_stale_temps(self) -> int:
        """Remove what a writer killed mid-write left behind: every writer holds the lock, so none is live."""
        stale = list(self.root.glob(f".*{SUFFIX}.*.tmp"))
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        return len(stale)

    def remove_leftovers(self) -> int:
        """Remove the temp files of saves that were interrupted (a killed process); returns how many.
        Called when a library is opened, so a restart leaves the folder clean."""
        if not self.root.is_dir():
            return 0
        try:
            with self._lock.hold(write=True):
                removed = self._drop_stale_temps()
        except VectorError as exc:  # busy or read-only: nothing to clean now, the next write cleans
            log.info("vector folder %s: leftovers not checked (%s)", self.root, exc)
            return 0
        if removed:
            log.info("vector folder %s: removed %d leftover temp file(s) of interrupted saves", self.root, removed)
        return removed

    def save(self, vec: EditVector, overwrite: bool = False) -> EditVector:
        """Store a vector under its (sanitised) name; returns what was stored."""
        name = sanitize_name(vec.name)
        check_expected(vec, self.bundle_id, self.latent_shape)
        if name != vec.name:
            vec = dataclasses.replace(vec, name=name)
        with self._lock.hold(write=True):
            self._drop_stale_temps()
            entries = self._scan()
            existing = next((e for e in entries if name_key(e.vec.name) == name_key(name)), None)
            if existing is not None and existing.preset:
                raise VectorError(f"'{existing.vec.name}' is a preset of this model and read-only; choose another name")
            clash = self._clash(entries, name, ignore=existing if overwrite else None)
            if clash is not None:
                raise VectorError(f"{_clash_str(clash)} already exists; choose another name or allow overwriting")
            path = self._path_for(name)
            save_vector(vec, path)
            if existing is not None and not _same_file(existing.path, path):
                existing.path.unlink(missing_ok=True)  # overwrite of "Smile" by "smile": drop the old spelling
        return vec

    def rename(self, old: str, new: str) -> EditVector:
        """Give a user vector a new name (changing only case is allowed).

        The file is moved first and then rewritten with the new name in place, so at every moment
        exactly one file holds the vector: a crash leaves it under the new file name, never twice or lost.
        """
        with self._lock.hold(write=True):
            self._drop_stale_temps()
            entries = self._scan()
            entry = self._find(entries, old)
            if entry.preset:
                raise VectorError(f"'{entry.vec.name}' is a preset shipped with the model and cannot be renamed")
            name = sanitize_name(new)
            clash = self._clash(entries, name, ignore=entry)
            if clash is not None:
                raise VectorError(f"{_clash_str(clash)} already exists; choose another name")
            vec = dataclasses.replace(entry.vec, name=name)
            path = self._path_for(name)
            os.replace(entry.path, path)  # also a case-only rename on a case-insensitive disk
            try:
                save_vector(vec, path)
            except BaseException:
                os.replace(path, entry.path)
                raise
        return vec

    def delete(self, name: str) -> None:
        """Remove a user vector (its one file holds the tensor and all its metadata); presets stay."""
        with self._lock.hold(write=True):
            entry = self._find(self._scan(), name)
            if entry.preset:
                raise VectorError(f"'{entry.vec.name}' is a preset shipped with the model and cannot be deleted")
            entry.path.unlink(missing_ok=True)

    def export(self, name: str, dest_path: str | Path) -> Path:
        """Write a copy of the vector to ``dest_path`` (a file, or a folder to put '<name>.safetensors' in)."""
        vec = self.get(name)
        dest = Path(dest_path)
        if dest.is_dir():
            dest = dest / f"{vec.name}{SUFFIX}"
        return save_vector(vec, dest)

    def import_file(self, path: str | Path, name: str | None = None,
                    check: Callable[[EditVector], None] | None = None) -> EditVector:
        """Add a vector file from this project or an EditGAN ``.npy``; a clashing name gets ' (2)', ' (3)', ...

        ``check`` may refuse the parsed vector (by raising) before anything is stored, e.g. one out of
        proportion to the model (``EditGANPipeline.check_vector``).
        """
        path = Path(path)
        data = read_vector_file(path, "file")
        if data.startswith((NPY_MAGIC, b"PK")):
            vec = vector_from_npy_bytes(data, path, self.bundle_id, self.latent_shape, name=name)
        else:
            vec = vector_from_bytes(data, f"'{path.name}'", self.bundle_id, self.latent_shape)
            if name is not None:
                vec = dataclasses.replace(vec, name=name)
        if check is not None:
            check(vec)
        base = sanitize_name(vec.name)
        with self._lock.hold(write=True):
            entries = self._scan()
            unique = base
            n = 1
            while self._clash(entries, unique) is not None:
                n += 1
                suffix = f" ({n})"
                unique = sanitize_name(base[: MAX_NAME_CHARS - len(suffix)].rstrip() + suffix)
            return self.save(dataclasses.replace(vec, name=unique))


def _clash_str(clash: _Entry | Path) -> str:
    if isinstance(clash, _Entry):
        return f"a vector named '{clash.vec.name}' (names ignore case and separators)"
    return f"a file named '{clash.name}'"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
