"""Built-in procedural dataset in the exact Oxford-IIIT Pet layout.

``generate_pets_like(dest, ...)`` writes::

    dest/images/<Class>_<n>.jpg
    dest/annotations/xmls/<Class>_<n>.xml        PASCAL VOC, like the pets head boxes
    dest/annotations/trainval.txt, test.txt, list.txt   "<name> <class id> <species> <breed id>"
    dest/label_map.pbtxt                          the classes, ids 1..N

so that ``odkit create-pet-tfrecord --data_dir dest`` treats it exactly like the real dataset (class from the
file name; capitalised names are "cats", lower-case "dogs", as in the real data).

Each class is a distinct shape *and* texture; colours, scale, aspect, position, lighting, background
and clutter vary, and objects can be partly occluded or cut by the image border. One or two objects of the
image's class per image (the real pets data has one head per image). Everything is a function of the seed.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from odkit.fileio import atomic_dir

# (name, shape, texture). Capitalised = "cat" species, lower case = "dog", as in Oxford-IIIT Pet.
CLASSES: tuple[tuple[str, str, str], ...] = (
    ("Disc", "disc", "solid"),
    ("Triangle", "triangle", "stripes"),
    ("star", "star", "dots"),
    ("cross", "cross", "checker"),
)
# Each class also has its own band of hues (like a breed's typical coat), varied in saturation, value and by
# the image's lighting; backgrounds and clutter take any colour.
HUE_CENTRES = (0.0, 0.33, 0.62, 0.14)

LIST_HEADER = (
    "#Image CLASS-ID SPECIES BREED ID\n"
    "#CLASS-ID: 1:37 Class ids\n"
    "#SPECIES: 1:Cat 2:Dog\n"
    "#BREED ID: 1-25:Cat 1:12:Dog\n"
    "#All images with 1st letter as captial are cat images\n"
    "#images with small first letter are dog images\n"
)


@dataclass(frozen=True)
class SyntheticSpec:
    images_per_class: int = 60
    test_per_class: int = 10
    min_size: int = 128
    max_size: int = 224
    seed: int = 0


def _shape_mask(shape: str, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A binary mask (mode L) of the shape filling a w x h box."""
    w, h = size
    scale = 4  # supersample for smooth edges
    big = Image.new("L", (w * scale, h * scale), 0)
    d = ImageDraw.Draw(big)
    W, H = w * scale, h * scale
    if shape == "disc":
        d.ellipse([0, 0, W - 1, H - 1], fill=255)
    elif shape == "triangle":
        d.polygon([(W / 2, 0), (W - 1, H - 1), (0, H - 1)], fill=255)
    elif shape == "star":
        pts = []
        for i in range(10):
            r = 0.5 if i % 2 == 0 else 0.28
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((W / 2 + r * W * math.cos(a), H / 2 + r * H * math.sin(a)))
        d.polygon(pts, fill=255)
    elif shape == "cross":
        t = 0.4
        d.rectangle([W * (0.5 - t / 2), 0, W * (0.5 + t / 2), H - 1], fill=255)
        d.rectangle([0, H * (0.5 - t / 2), W - 1, H * (0.5 + t / 2)], fill=255)
    else:  # pragma: no cover - CLASSES is fixed
        raise ValueError(shape)
    return big.resize((w, h), Image.LANCZOS)


def _class_colour(class_index: int, rng: random.Random) -> np.ndarray:
    import colorsys

    hue = (HUE_CENTRES[class_index] + rng.uniform(-0.05, 0.05)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
    return np.array([r * 255, g * 255, b * 255], dtype=np.float32)


def _texture(texture: str, size: tuple[int, int], rng: random.Random, colour: np.ndarray) -> Image.Image:
    w, h = size
    c1 = colour
    c2 = c1 * rng.uniform(0.15, 0.45)  # a darker shade of the class colour
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = max(8.0, min(w, h) / rng.uniform(2.0, 3.0))  # coarse enough to survive a 128 px model input
    if texture == "solid":
        t = np.zeros((h, w), np.float32) + (xx + yy) / max(1.0, w + h) * 0.3
    elif texture == "stripes":
        t = (np.floor((xx + yy * rng.uniform(-0.5, 0.5)) / (period / 2)) % 2).astype(np.float32)
    elif texture == "dots":
        cx = (xx % period) - period / 2
        cy = (yy % period) - period / 2
        t = ((cx * cx + cy * cy) < (period * 0.3) ** 2).astype(np.float32)
    elif texture == "checker":
        t = ((np.floor(xx / (period / 2)) + np.floor(yy / (period / 2))) % 2).astype(np.float32)
    else:  # pragma: no cover
        raise ValueError(texture)
    img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _background(size: tuple[int, int], rng: random.Random, nrng: np.random.Generator) -> Image.Image:
    w, h = size
    a = np.array([rng.randint(40, 220) for _ in range(3)], np.float32)
    b = np.array([rng.randint(40, 220) for _ in range(3)], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    g = (xx * math.cos(ang) + yy * math.sin(ang)) / max(w, h)
    g = (g - g.min()) / max(1e-6, float(np.ptp(g)))
    img = a * (1 - g[..., None]) + b * g[..., None]
    img += nrng.normal(0, rng.uniform(4, 14), size=img.shape)
    bg = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(bg)
    for _ in range(rng.randint(2, 6)):  # clutter: lines, blobs and rectangles that are not classes
        col = tuple(rng.randint(0, 255) for _ in range(3))
        kind = rng.random()
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        if kind < 0.45:
            d.line([x0, y0, rng.uniform(0, w), rng.uniform(0, h)], fill=col, width=rng.randint(1, 4))
        elif kind < 0.75:
            r = rng.uniform(3, min(w, h) / 10)
            d.ellipse([x0 - r, y0 - r * rng.uniform(0.2, 0.5), x0 + r, y0 + r * rng.uniform(0.2, 0.5)], fill=col)
        else:
            d.rectangle([x0, y0, x0 + rng.uniform(3, w / 8), y0 + rng.uniform(2, 6)], fill=col)
    return bg.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))


def render_example(class_index: int, seed: int, spec: SyntheticSpec = SyntheticSpec()) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """One image of class ``CLASSES[class_index]`` and its boxes as (xmin, ymin, xmax, ymax) pixels."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    _, shape, texture = CLASSES[class_index]
    W = rng.randint(spec.min_size, spec.max_size)
    H = int(W * rng.uniform(0.7, 1.3))
    img = _background((W, H), rng, nrng)
    boxes: list[tuple[int, int, int, int]] = []
    n_obj = 1 if rng.random() < 0.75 else 2
    for _ in range(n_obj):
        for _attempt in range(20):
            side = rng.uniform(0.28, 0.6 if n_obj == 1 else 0.42) * min(W, H)
            aspect = rng.uniform(0.7, 1.4)
            ow, oh = max(10, int(side * math.sqrt(aspect))), max(10, int(side / math.sqrt(aspect)))
            # allow a little of the object to leave the image (truncated, like real heads at the border)
            x0 = rng.randint(-ow // 6, W - ow + ow // 6)
            y0 = rng.randint(-oh // 6, H - oh + oh // 6)
            box = (max(0, x0), max(0, y0), min(W, x0 + ow), min(H, y0 + oh))
            if all(_iou(box, b) < 0.05 for b in boxes):
                break
        mask = _shape_mask(shape, (ow, oh), rng)
        tex = _texture(texture, (ow, oh), rng, _class_colour(class_index, rng))
        img.paste(tex, (x0, y0), mask)
        boxes.append(box)
    # occluders: a bar of background-like colour over part of an object
    d = ImageDraw.Draw(img)
    for b in boxes:
        if rng.random() < 0.3:
            bw, bh = b[2] - b[0], b[3] - b[1]
            col = tuple(rng.randint(0, 255) for _ in range(3))
            if rng.random() < 0.5:
                y = rng.uniform(b[1], b[3])
                d.rectangle([b[0] - 2, y, b[2] + 2, y + bh * rng.uniform(0.08, 0.2)], fill=col)
            else:
                x = rng.uniform(b[0], b[2])
                d.rectangle([x, b[1] - 2, x + bw * rng.uniform(0.08, 0.2), b[3] + 2], fill=col)
    # lighting
    arr = np.asarray(img).astype(np.float32)
    arr = arr * rng.uniform(0.6, 1.25) + rng.uniform(-25, 25)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img, boxes


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def voc_xml(filename: str, width: int, height: int, species: str, boxes: list[tuple[int, int, int, int]]) -> str:
    objs = "".join(
        f"<object><name>{species}</name><pose>Frontal</pose><truncated>{int(x0 == 0 or y0 == 0 or x1 == width or y1 == height)}</truncated>"
        f"<occluded>0</occluded><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>"
        f"<difficult>0</difficult></object>"
        for x0, y0, x1, y1 in boxes
    )
    return (
        f"<annotation><folder>OXIIIT</folder><filename>{filename}</filename><source><database>odkit synthetic "
        f"pets</database><annotation>odkit</annotation><image>procedural</image></source><size><width>{width}"
        f"</width><height>{height}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>"
    )


def label_map_text() -> str:
    return "".join(f'item {{\n  id: {i + 1}\n  name: "{name}"\n}}\n\n' for i, (name, _, _) in enumerate(CLASSES))


def generate_pets_like(dest: str | os.PathLike[str], spec: SyntheticSpec = SyntheticSpec()) -> dict[str, int]:
    """Write the dataset into ``dest`` (created; written to a temp folder first, then renamed).

    Returns counts: {"trainval": n, "test": n, "classes": n}.
    """
    dest = Path(dest)
    if dest.exists() and (dest / "annotations" / "trainval.txt").exists():
        raise FileExistsError(f"{dest} already holds a dataset")
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    trainval: list[str] = []
    test: list[str] = []
    with atomic_dir(dest) as tmp:  # only an empty folder is replaced
        (tmp / "images").mkdir()
        (tmp / "annotations" / "xmls").mkdir(parents=True)
        n_cat = sum(1 for name, _, _ in CLASSES if name[0].isupper())
        for ci, (name, _, _) in enumerate(CLASSES):
            is_cat = name[0].isupper()
            species = "cat" if is_cat else "dog"
            breed_id = (ci + 1) if is_cat else (ci + 1 - n_cat)
            total = spec.images_per_class + spec.test_per_class
            for k in range(1, total + 1):
                stem = f"{name}_{k}"
                img, boxes = render_example(ci, seed=spec.seed * 1_000_003 + ci * 10_007 + k, spec=spec)
                img.save(tmp / "images" / f"{stem}.jpg", quality=90)
                (tmp / "annotations" / "xmls" / f"{stem}.xml").write_text(
                    voc_xml(f"{stem}.jpg", img.width, img.height, species, boxes)
                )
                line = f"{stem} {ci + 1} {1 if is_cat else 2} {breed_id}"
                (trainval if k <= spec.images_per_class else test).append(line)
        (tmp / "annotations" / "trainval.txt").write_text("\n".join(trainval) + "\n")
        (tmp / "annotations" / "test.txt").write_text("\n".join(test) + "\n")
        (tmp / "annotations" / "list.txt").write_text(LIST_HEADER + "\n".join(trainval + test) + "\n")
        (tmp / "label_map.pbtxt").write_text(label_map_text())
    return {"trainval": len(trainval), "test": len(test), "classes": len(CLASSES)}
