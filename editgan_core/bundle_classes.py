"""A bundle's part classes (names, colours, edit groups), read from the JSON or YAML file a user writes.

This file is the one part of a new bundle written by hand, so every problem in it is collected and
reported together, each naming its entry, before anything is built. Shipped templates
(``editgan_core/templates/*.json``) are starting points to copy; the README documents the format.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editgan_core.bundle import BundleError, PartClass

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
YAML_SUFFIXES = (".yaml", ".yml")
MAX_SPEC_BYTES = 1024 * 1024  # a 256-class file is a few tens of KB
MAX_CLASSES = 256  # label maps are uint8
MAX_GROUPS = 256
MAX_NAME_CHARS = 64
TOP_KEYS = ("description", "classes", "edit_groups")
CLASS_KEYS = ("id", "name", "color")
_HEX = re.compile(r"#([0-9a-fA-F]{6})")


class ClassSpecError(BundleError):
    """A classes file with problems; ``problems`` lists each one."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s) in the classes file:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class ClassSpec:
    """Validated classes (ids 0..K-1 in order) and edit groups (lists of class ids)."""

    classes: tuple[PartClass, ...]
    edit_groups: dict[str, list[int]]
    description: str = ""

    def manifest_entries(self) -> dict[str, Any]:
        """The manifest's ``classes`` and ``edit_groups`` (and ``classes_description`` when given)."""
        entries: dict[str, Any] = {
            "classes": [{"id": c.id, "name": c.name, "color": list(c.color)} for c in self.classes],
            "edit_groups": {k: list(v) for k, v in self.edit_groups.items()},
        }
        if self.description:
            entries["classes_description"] = self.description
        return entries


def list_templates() -> dict[str, Path]:
    """Shipped class templates by name (file stem)."""
    return {p.stem: p for p in sorted(TEMPLATES_DIR.glob("*.json"))}


def template_path(name: str) -> Path:
    templates = list_templates()
    matches = [stem for stem in templates if stem == name or stem.split("_")[0] == name]
    if len(matches) != 1:
        raise BundleError(f"no class template '{name}'; shipped: {', '.join(templates)}")
    return templates[matches[0]]


def read_class_file(path: str | Path) -> ClassSpec:
    """Parse and validate a classes file (JSON, or YAML when PyYAML is installed)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise BundleError(f"cannot read the classes file {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_SPEC_BYTES:
        raise BundleError(f"{path.name} is larger than {MAX_SPEC_BYTES // 1024} KB; a classes file is a few KB")
    return parse_class_spec(_decode(raw, path), path.name)


def _decode(raw: bytes, path: Path) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path.name} is not UTF-8 text") from exc
    if path.suffix.lower() in YAML_SUFFIXES:
        try:
            import yaml
        except ImportError as exc:
            raise BundleError(f"{path.name} is YAML, which needs PyYAML (pip install pyyaml); "
                              "or write the same content as JSON") from exc
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BundleError(f"{path.name} is not valid YAML: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path.name} is not valid JSON: {exc}") from exc


def parse_class_spec(data: Any, source: str = "classes") -> ClassSpec:
    """Validate already-parsed content; raises ``ClassSpecError`` listing every problem found."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ClassSpecError(source, [f"the file must hold an object with {', '.join(TOP_KEYS)}, "
                                      f"found {type(data).__name__}"])
    problems += _unknown_keys(data, TOP_KEYS, "top level")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        problems.append("description must be text of at most 500 characters")
        description = ""
    classes = _parse_classes(data.get("classes"), problems)
    entries = data.get("classes") if isinstance(data.get("classes"), list) else []
    # refs to entries already reported as broken are not reported again under each edit group
    broken = {str(e.get(k)).casefold() for e in entries if isinstance(e, dict) for k in ("id", "name")}
    broken -= {str(r).casefold() for c in classes for r in (c.id, c.name)}
    groups = _parse_groups(data.get("edit_groups", {}), classes, broken, problems)
    if problems:
        raise ClassSpecError(source, problems)
    return ClassSpec(tuple(classes), groups, description)


def _unknown_keys(entry: dict, allowed: tuple[str, ...], where: str) -> list[str]:
    problems = []
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
            problems.append(f"{where}: unknown key '{key}'{hint}")
    return problems


def parse_color(value: Any) -> tuple[int, int, int] | None:
    """[r, g, b] with integers 0-255, or "#rrggbb"; None if neither."""
    if isinstance(value, str):
        match = _HEX.fullmatch(value.strip())
        return tuple(int(match.group(1)[i: i + 2], 16) for i in (0, 2, 4)) if match else None
    if (isinstance(value, list | tuple) and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)):
        return int(value[0]), int(value[1]), int(value[2])
    return None


def _parse_classes(entries: Any, problems: list[str]) -> list[PartClass]:
    if not isinstance(entries, list) or not entries:
        problems.append("'classes' must be a non-empty list of {id, name, color} entries")
        return []
    if len(entries) > MAX_CLASSES:
        problems.append(f"{len(entries)} classes; at most {MAX_CLASSES} fit in a label map")
        return []
    classes = [c for i, entry in enumerate(entries) if (c := _parse_class(i, entry, problems)) is not None]
    _check_unique(classes, problems)
    ids = sorted(c.id for c in classes)
    if len(classes) == len(entries) and len(set(ids)) == len(ids) and ids != list(range(len(ids))):
        problems.append(f"class ids must be 0..{len(ids) - 1} without gaps, found {ids}")
    if len(entries) < 2:
        problems.append("need at least two classes (background and one part)")
    if classes and not any(c.name.casefold() == "background" for c in classes):
        problems.append("no class named 'background': every label map needs one for pixels outside all parts")
    return sorted(classes, key=lambda c: c.id)


def _parse_class(index: int, entry: Any, problems: list[str]) -> PartClass | None:
    where = f"classes[{index}]"
    if not isinstance(entry, dict):
        problems.append(f"{where} must be an object with id, name and color")
        return None
    start = len(problems)
    problems += _unknown_keys(entry, CLASS_KEYS, where)
    class_id, name, color = entry.get("id"), entry.get("name"), parse_color(entry.get("color"))
    if not isinstance(class_id, int) or isinstance(class_id, bool) or not 0 <= class_id < MAX_CLASSES:
        problems.append(f"{where}: id must be an integer 0..{MAX_CLASSES - 1}, got {class_id!r}")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
        problems.append(f"{where}: name must be printable text of 1-{MAX_NAME_CHARS} characters, got {name!r}")
    if color is None:
        problems.append(f"{where} ({name!r}): color must be [r, g, b] with integers 0-255 or '#rrggbb', "
                        f"got {entry.get('color')!r}")
    if len(problems) > start:
        return None
    return PartClass(class_id, name.strip(), color)


def _check_unique(classes: list[PartClass], problems: list[str]) -> None:
    for label, key in (("id", lambda c: c.id), ("name", lambda c: c.name.casefold()), ("color", lambda c: c.color)):
        seen: dict[Any, PartClass] = {}
        for c in classes:
            other = seen.setdefault(key(c), c)
            if other is not c:
                value = c.hex if label == "color" else getattr(c, label)
                problems.append(f"duplicate {label} {value!r}: classes '{other.name}' and '{c.name}'")


def resolve_class(ref: Any, classes: Sequence[PartClass]) -> int | None:
    """A class id from an id or a (case-insensitive) name; None when it names no class."""
    for c in classes:
        if (c.name.casefold() == ref.casefold()) if isinstance(ref, str) else (
                isinstance(ref, int) and not isinstance(ref, bool) and c.id == ref):
            return c.id
    return None


def _parse_groups(groups: Any, classes: list[PartClass], broken: set[str], problems: list[str]
                  ) -> dict[str, list[int]]:
    if not isinstance(groups, dict):
        problems.append("'edit_groups' must map a group name to a list of class ids or names")
        return {}
    if len(groups) > MAX_GROUPS:
        problems.append(f"{len(groups)} edit groups; at most {MAX_GROUPS}")
        return {}
    out: dict[str, list[int]] = {}
    for name, members in groups.items():
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            problems.append(f"edit group name {name!r} must be text of 1-{MAX_NAME_CHARS} characters")
            continue
        if not isinstance(members, list) or not members:
            problems.append(f"edit group '{name}' must be a non-empty list of class ids or names")
            continue
        ids = []
        for member in members:
            found = resolve_class(member, classes)
            if found is None and str(member).casefold() not in broken:
                problems.append(f"edit group '{name}' names {member!r}, which is not a class id or name")
            elif found is not None and found not in ids:
                ids.append(found)
        out[name] = ids
    return out
