"""Label maps: parse, validate with file:line, write, shipped pets map, real TF files."""

from __future__ import annotations

import pytest

from odkit.data.label_map import (
    LabelMap,
    get_pets_label_map,
    load_label_map,
    parse_label_map,
    pets_label_map_path,
    write_label_map,
)
from odkit.errors import ConfigError


def test_parse_lookup_and_categories() -> None:
    lm = parse_label_map("item {\n id: 2\n name: 'dog'\n display_name: 'Dog'\n}\nitem { id: 1 name: \"cat\" }\n")
    assert lm.name_to_id == {"dog": 2, "cat": 1}
    assert lm.id_to_name[2] == "dog" and lm.id_to_display_name[2] == "Dog" and lm.id_to_display_name[1] == "cat"
    assert lm.num_classes == 2 and len(lm) == 2
    assert lm.categories == [{"id": 1, "name": "cat"}, {"id": 2, "name": "Dog"}]
    assert lm.get_dict(use_display_name=True) == {"Dog": 2, "cat": 1}


def test_background_zero_is_ignored_and_num_classes_is_max_id() -> None:
    lm = parse_label_map("item { id: 0 name: 'background' }\nitem { id: 5 name: 'x' }")
    assert lm.ids == (5,) and lm.num_classes == 5


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("item {\n id: 1\n name: 'a'\n}\nitem {\n  name: 'b'\n  id: 1\n}\n", r"f.pbtxt:7: duplicate label map id 1 \(also at line 2\)"),
        ("item {\n id: 1\n name: 'a'\n}\nitem {\n  name: 'a'\n  id: 2\n}\n", r"f.pbtxt:6: duplicate label map name 'a'"),
        ("item {\n id: 0\n name: 'zero'\n}\n", r"f.pbtxt:2: label map id 0 .*ids must be >= 1"),
        ("item {\n id: 1\n nme: 'a'\n}\n", r"f.pbtxt:3:2: bad label map text: .*no field named \"nme\""),
        ("item {\n name: 'a'\n}\n", r"f.pbtxt:1: label map item has no id"),
    ],
)
def test_invalid_label_maps(text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parse_label_map(text, "f.pbtxt")


def test_write_and_reload(tmp_path) -> None:
    lm = LabelMap(ids=(1, 3), names=("a", "it's"), display_names=("A", "it's"))
    path = tmp_path / "sub" / "lm.pbtxt"
    back = write_label_map(lm, path)
    assert back.path == str(path)
    again = load_label_map(path)
    assert (again.ids, again.names, again.display_names) == ((1, 3), ("a", "it's"), ("A", "it's"))
    assert load_label_map(write_label_map(["x", "y"], tmp_path / "n.pbtxt").path).name_to_id == {"x": 1, "y": 2}
    assert load_label_map(write_label_map({"q": 4}, tmp_path / "d.pbtxt").path).ids == (4,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pbtxt", "n.pbtxt", "sub"]
    with pytest.raises(ConfigError, match="not found"):
        load_label_map(tmp_path / "missing.pbtxt")


def test_shipped_pets_label_map() -> None:
    lm = get_pets_label_map()
    assert lm.num_classes == 37 and lm.name_to_id["Abyssinian"] == 1 and lm.name_to_id["yorkshire_terrier"] == 37
    assert lm.name_to_id["american_bulldog"] == 2 and lm.name_to_id["Bengal"] == 6


def test_shipped_pets_map_is_the_tf_file(compat_dir) -> None:
    ref = compat_dir / "label_maps" / "pet_label_map.pbtxt"
    assert open(pets_label_map_path(), "rb").read() == ref.read_bytes()


def test_all_tf_label_maps_load(compat_dir) -> None:
    sizes = {p.name: load_label_map(p) for p in sorted((compat_dir / "label_maps").glob("*.pbtxt"))}
    assert sizes["mscoco_label_map.pbtxt"].num_classes == 90 and len(sizes["mscoco_label_map.pbtxt"]) == 80
    assert sizes["mscoco_complete_label_map.pbtxt"].ids[0] == 1  # background id 0 dropped
    assert sizes["face_person_with_keypoints_label_map.pbtxt"].names == ("face", "Person")
