"""The built-in dataset: Oxford-IIIT Pet layout, deterministic, boxes that match what is drawn."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from defusedxml import ElementTree as ET
from PIL import Image

from odkit.data.synthetic import CLASSES, SyntheticSpec, generate_pets_like, render_example

SPEC = SyntheticSpec(images_per_class=5, test_per_class=2, seed=3)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_and_lists(tmp_path: Path) -> None:
    counts = generate_pets_like(tmp_path / "d", SPEC)
    d = tmp_path / "d"
    assert counts == {"trainval": 5 * len(CLASSES), "test": 2 * len(CLASSES), "classes": len(CLASSES)}
    trainval = (d / "annotations" / "trainval.txt").read_text().split("\n")
    names = [ln.split()[0] for ln in trainval if ln]
    assert len(names) == 20 and len(set(names)) == 20
    for name in names:
        assert (d / "images" / f"{name}.jpg").is_file()
        assert (d / "annotations" / "xmls" / f"{name}.xml").is_file()
    # list.txt = official header + every image; species follows the case of the first letter
    lst = (d / "annotations" / "list.txt").read_text().splitlines()
    assert lst[0].startswith("#Image CLASS-ID SPECIES BREED ID")
    for ln in lst:
        if not ln.startswith("#"):
            name, cid, species, _ = ln.split()
            assert int(species) == (1 if name[0].isupper() else 2)
            assert CLASSES[int(cid) - 1][0] == name.rsplit("_", 1)[0]
    assert 'name: "Disc"' in (d / "label_map.pbtxt").read_text()


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    generate_pets_like(tmp_path / "a", SPEC)
    generate_pets_like(tmp_path / "b", SPEC)
    generate_pets_like(tmp_path / "c", SyntheticSpec(images_per_class=5, test_per_class=2, seed=4))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    generate_pets_like(tmp_path / "a", SPEC)
    with pytest.raises(FileExistsError):
        generate_pets_like(tmp_path / "a", SPEC)


@pytest.mark.parametrize("class_index", range(len(CLASSES)))
def test_boxes_are_in_the_image_and_cover_the_object(class_index: int) -> None:
    for seed in range(5):
        img, boxes = render_example(class_index, seed)
        assert 1 <= len(boxes) <= 2
        arr = np.asarray(img).astype(np.float32)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= img.width and 0 <= y0 < y1 <= img.height
            assert (x1 - x0) >= 8 and (y1 - y0) >= 8
            # the object is textured/contrasting: the box interior differs from a ring just outside it
            inside = arr[y0:y1, x0:x1].reshape(-1, 3)
            assert inside.std(axis=0).max() > 8.0


def test_xml_matches_image_size(tmp_path: Path) -> None:
    generate_pets_like(tmp_path / "d", SPEC)
    d = tmp_path / "d"
    for xml in sorted((d / "annotations" / "xmls").glob("*.xml"))[:6]:
        root = ET.parse(xml).getroot()
        w = int(root.find("size/width").text)
        h = int(root.find("size/height").text)
        with Image.open(d / "images" / root.find("filename").text) as im:
            assert im.size == (w, h)
            assert im.mode == "RGB"
        species = {o.find("name").text for o in root.iter("object")}
        assert species == {"cat" if xml.stem[0].isupper() else "dog"}
