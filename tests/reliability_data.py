"""Tiny datasets and configs for the reliability tests (issue 18): built in a tmp dir in well under a second."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "src" / "odkit" / "configs" / "ssd_mobilenet_v2_fpnlite_128x128_demo.config"
PET_CLASSES = ("Abyssinian", "Bengal")


def jpeg(size: tuple[int, int] = (48, 40), color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def voc_xml(filename: str, objects: list[tuple[str, int, int, int, int]], w: int = 48, h: int = 40,
            size_text: tuple[str, str] | None = None) -> str:
    sw, sh = size_text or (str(w), str(h))
    objs = "".join(
        f"<object><name>{n}</name><pose>Frontal</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects)
    return (f"<annotation><folder>images</folder><filename>{filename}</filename>"
            f"<size><width>{sw}</width><height>{sh}</height><depth>3</depth></size>{objs}</annotation>")


def label_map_text(names: tuple[str, ...] | list[str]) -> str:
    return "".join(f'item {{ id: {i} name: "{n}" }}\n' for i, n in enumerate(names, start=1))


def make_pets(root: Path, per_class: int = 4, classes: tuple[str, ...] = PET_CLASSES) -> Path:
    """A Pets-layout folder: images/<Breed>_<i>.jpg, annotations/xmls/*.xml, annotations/trainval.txt."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "xmls").mkdir(parents=True, exist_ok=True)
    names = []
    for c, breed in enumerate(classes):
        for i in range(1, per_class + 1):
            name = f"{breed}_{i}"
            (root / "images" / f"{name}.jpg").write_bytes(jpeg(color=(40 + 90 * c, 30 * i, 100)))
            (root / "annotations" / "xmls" / f"{name}.xml").write_text(
                voc_xml(f"{name}.jpg", [("cat" if c == 0 else "dog", 5 + i, 6, 30 + i, 33)]))
            names.append(name)
    (root / "annotations" / "trainval.txt").write_text("".join(f"{n} {k} 1 1\n" for k, n in enumerate(names)))
    (root / "label_map.pbtxt").write_text(label_map_text(classes))
    return root


def make_voc(root: Path, classes: tuple[str, ...] = ("cat", "dog"), n: int = 4) -> Path:
    """A VOC-layout folder: Annotations/*.xml + JPEGImages/*.jpg."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cls = classes[i % len(classes)]
        (root / "JPEGImages" / f"im{i}.jpg").write_bytes(jpeg(color=(20 * i, 100, 50)))
        (root / "Annotations" / f"im{i}.xml").write_text(voc_xml(f"im{i}.jpg", [(cls, 4, 5, 30, 33)]))
    return root


def train_overrides(records: str, label_map: Path, num_classes: int = 2, size: int = 64, batch: int = 2) -> list[str]:
    ov = [
        f"train_input_reader.tf_record_input_reader.input_path={records}",
        f"train_input_reader.label_map_path={label_map}",
        f"eval_input_reader.0.tf_record_input_reader.input_path={records}",
        f"eval_input_reader.0.label_map_path={label_map}",
        f"train_config.batch_size={batch}",
        f"model.ssd.num_classes={num_classes}",
        f"model.ssd.image_resizer.fixed_shape_resizer.height={size}",
        f"model.ssd.image_resizer.fixed_shape_resizer.width={size}",
    ]
    out: list[str] = []
    for o in ov:
        out += ["--override", o]
    return out


def write_train_config(dest: Path, records: str, label_map: Path, num_classes: int = 2, size: int = 64,
                       batch: int = 2) -> Path:
    """The demo config with the paths, classes and size filled in, saved as a plain pipeline.config."""
    import odkit.config as cfg

    argv = train_overrides(records, label_map, num_classes, size, batch)
    config = cfg.load(DEMO, overrides=argv[1::2])
    cfg.save(config, dest)
    return dest
