"""Class files for new bundles: the shipped templates, and every mistake named before anything is built."""

from __future__ import annotations

import json

import pytest

from editgan_core.bundle import BundleError
from editgan_core.bundle_classes import (
    ClassSpecError,
    list_templates,
    parse_class_spec,
    read_class_file,
    template_path,
)


def spec(**overrides):
    data = {"classes": [{"id": 0, "name": "background", "color": [0, 0, 0]},
                        {"id": 1, "name": "wheel", "color": "#ff0000"},
                        {"id": 2, "name": "hubcap", "color": [0, 255, 0]}],
            "edit_groups": {"wheels": [1, "hubcap"]}}
    data.update(overrides)
    return data


def problems_of(data) -> list[str]:
    with pytest.raises(ClassSpecError) as info:
        parse_class_spec(data, "test.json")
    return info.value.problems


def test_a_valid_file_gives_ordered_classes_and_groups_of_ids():
    data = spec()
    data["classes"].reverse()  # any order in the file; ids decide
    parsed = parse_class_spec(data)
    assert [c.name for c in parsed.classes] == ["background", "wheel", "hubcap"]
    assert parsed.classes[1].color == (255, 0, 0)
    assert parsed.edit_groups == {"wheels": [1, 2]}
    assert parsed.manifest_entries()["classes"][2] == {"id": 2, "name": "hubcap", "color": [0, 255, 0]}


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["classes"][1].update(color=[255, 0, 300]), "color must be [r, g, b]"),
    (lambda d: d["classes"][1].update(color="red"), "color must be [r, g, b]"),
    (lambda d: d["classes"][2].update(color="#FF0000"), "duplicate color"),
    (lambda d: d["classes"][2].update(id=1), "duplicate id 1"),
    (lambda d: d["classes"][2].update(name="Wheel"), "duplicate name"),
    (lambda d: d["classes"][2].update(id=5), "ids must be 0..2"),
    (lambda d: d["classes"][0].update(name="sky"), "no class named 'background'"),
    (lambda d: d["edit_groups"].update(tyres=[1, 7]), "edit group 'tyres' names 7"),
    (lambda d: d["edit_groups"].update(tyres=["tyre"]), "edit group 'tyres' names 'tyre'"),
    (lambda d: d["edit_groups"].update(tyres=[]), "non-empty list"),
    (lambda d: d.update(edit_group={}), "did you mean 'edit_groups'"),
    (lambda d: d["classes"][1].update(colour="#00ff00"), "unknown key 'colour'"),
    (lambda d: d["classes"][1].update(id=True), "id must be an integer"),
])
def test_each_mistake_is_named(change, expected):
    data = spec()
    change(data)
    assert any(expected in p for p in problems_of(data)), problems_of(data)


def test_all_problems_are_reported_together():
    data = spec()
    data["classes"][1]["color"] = [1, 2]
    data["edit_groups"]["x"] = [9]
    assert len(problems_of(data)) == 2


def test_class_count_is_bounded_by_the_label_map_type():
    many = [{"id": i, "name": f"c{i}" if i else "background", "color": [i % 256, i // 256, 0]} for i in range(257)]
    assert any("at most 256" in p for p in problems_of({"classes": many}))


@pytest.mark.parametrize("name, count, probe", [("faces", 19, "upper_lip"), ("cars", 32, "wheelhub_front")])
def test_shipped_templates_are_valid(name, count, probe):
    parsed = read_class_file(template_path(name))
    assert len(parsed.classes) == count
    assert probe in [c.name for c in parsed.classes]
    assert parsed.edit_groups and parsed.description
    assert set(list_templates()) == {"faces_celebamask", "cars_editgan32"}


def test_unknown_template_lists_the_shipped_ones():
    with pytest.raises(BundleError, match="faces_celebamask"):
        template_path("horses")


def test_yaml_files_read_the_same_as_json(tmp_path):
    yaml = pytest.importorskip("yaml")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec()))
    (tmp_path / "c.json").write_text(json.dumps(spec()))
    assert read_class_file(tmp_path / "c.yaml") == read_class_file(tmp_path / "c.json")


def test_unreadable_files_are_refused_clearly(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_class_file(tmp_path / "bad.json")
    with pytest.raises(BundleError, match="cannot read"):
        read_class_file(tmp_path / "missing.json")
    (tmp_path / "big.json").write_bytes(b" " * (1024 * 1024 + 1))
    with pytest.raises(BundleError, match="larger than"):
        read_class_file(tmp_path / "big.json")
