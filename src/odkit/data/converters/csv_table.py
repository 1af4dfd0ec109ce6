"""CSV boxes -> sharded TFRecords.

Columns (header required, any order, extra columns ignored): ``filename,width,height,class,xmin,ymin,xmax,ymax``
(the layout of the raccoon / generate_tfrecord.py tutorials); pixel coordinates. Rows of the same filename
form one image, in order of first appearance. ``width``/``height`` are optional (read from the image).
"""

from __future__ import annotations

import csv
import io
import os

from odkit.data.converters.common import (
    Log,
    SourceImage,
    SourceObject,
    Summary,
    dataset_file,
    stderr_log,
    write_dataset,
)
from odkit.data.label_map import load_label_map
from odkit.errors import DataError

REQUIRED = ("filename", "class", "xmin", "ymin", "xmax", "ymax")


def collect_csv(csv_path: str, image_dir: str) -> list[SourceImage]:
    try:
        with open(csv_path, "rb") as fb:
            raw = fb.read()
    except FileNotFoundError as exc:
        raise DataError("CSV file not found", where=csv_path) from exc
    except OSError as exc:
        raise DataError(f"cannot read the CSV file ({exc.strerror or exc})", where=csv_path) from None
    try:
        f = io.StringIO(raw.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as exc:
        raise DataError(f"CSV file is not UTF-8 text (byte {exc.start})", where=csv_path,
                        hint="save it as UTF-8") from None
    images: dict[str, SourceImage] = {}
    with f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise DataError(f"CSV header lacks column(s) {', '.join(missing)} (have: {', '.join(header)})",
                            where=f"{csv_path}:1")
        reader.fieldnames = header
        try:
            for row in reader:
                line = reader.line_num
                where = f"{csv_path}:{line}"
                name = (row.get("filename") or "").strip()
                if not name:
                    raise DataError("empty filename", where=where)
                try:
                    vals = [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
                    w = int(float(row["width"])) if row.get("width") else None
                    h = int(float(row["height"])) if row.get("height") else None
                except (TypeError, ValueError, OverflowError) as exc:
                    raise DataError(f"non-numeric size or box value ({str(exc)[:80]})", where=where) from exc
                im = images.get(name)
                if im is None:
                    im = SourceImage(path=dataset_file(image_dir, name, where=where), filename=os.path.basename(name),
                                     where=where, width=w, height=h)
                    images[name] = im
                cls = (row.get("class") or "").strip()
                if not cls:
                    raise DataError("empty class", where=where)
                im.objects.append(SourceObject(name=cls, xmin=vals[0], ymin=vals[1], xmax=vals[2], ymax=vals[3]))
        except csv.Error as exc:
            raise DataError(f"malformed CSV ({exc})", where=f"{csv_path}:{reader.line_num}") from exc
    return list(images.values())


def create_csv_tfrecord(
    csv_path: str, image_dir: str, output_path: str, *, label_map_path: str | None = None, num_shards: int = 1,
    val_fraction: float = 0.0, seed: int = 42, label_map_output_path: str | None = None,
    log: Log | None = stderr_log,
) -> Summary:
    if not os.path.isdir(image_dir):
        raise DataError("image folder not found", where=image_dir)
    images = collect_csv(csv_path, image_dir)
    if not images:
        raise DataError("CSV has no rows", where=csv_path)
    label_map = load_label_map(label_map_path) if label_map_path else None
    return write_dataset(images, output_path=output_path, label_map=label_map, num_shards=num_shards,
                         val_fraction=val_fraction, seed=seed, label_map_output_path=label_map_output_path, log=log)
