"""PASCAL VOC annotation XML (LabelImg / Oxford pets style), parsed safely with defusedxml."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from odkit.data.converters.common import SourceObject
from odkit.errors import DataError

MAX_XML_BYTES = 16 * 1024 * 1024


@dataclass
class VocAnnotation:
    path: str
    filename: str | None
    folder: str | None
    width: int | None
    height: int | None
    objects: list[SourceObject] = field(default_factory=list)


def _text(el: Element | None) -> str | None:
    if el is None or el.text is None:
        return None
    return el.text.strip()


def _int(el: Element | None, default: int, path: str, what: str) -> int:
    t = _text(el)
    if t is None or t == "":
        return default
    try:
        value = float(t)
        if not math.isfinite(value):
            raise ValueError(t)
        return int(value)
    except (ValueError, OverflowError) as exc:
        raise DataError(f"<{what}> is not a finite number: {t[:40]!r}", where=path) from exc


def _float(el: Element | None, path: str, what: str) -> float:
    t = _text(el)
    if t is None or t == "":
        raise DataError(f"<{what}> is missing", where=path)
    try:
        value = float(t)
    except ValueError as exc:
        raise DataError(f"<{what}> is not a number: {t[:40]!r}", where=path) from exc
    if not math.isfinite(value):
        raise DataError(f"<{what}> is not a finite number: {t[:40]!r}", where=path)
    return value


def parse_voc_xml(path: str) -> VocAnnotation:
    """Parse one VOC XML file. Malformed XML, DTDs / entities (XML bombs) raise DataError naming the file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_XML_BYTES + 1)
    except OSError as exc:
        raise DataError(f"cannot read annotation ({exc.strerror})", where=path) from exc
    if len(raw) > MAX_XML_BYTES:
        raise DataError(f"annotation XML larger than {MAX_XML_BYTES} bytes", where=path)
    try:
        root = SafeET.fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise DataError(f"unsafe XML refused ({type(exc).__name__}: DTDs / entities are not allowed)",
                        where=path) from exc
    except ParseError as exc:
        line, col = getattr(exc, "position", (None, None))
        raise DataError(f"malformed XML ({exc})", where=f"{path}:{line}" if line else path) from exc
    if root.tag != "annotation":
        raise DataError(f"root element is <{root.tag}>, expected <annotation> (PASCAL VOC)", where=path)
    size = root.find("size")
    width = _int(size.find("width") if size is not None else None, 0, path, "size/width") or None
    height = _int(size.find("height") if size is not None else None, 0, path, "size/height") or None
    objects = []
    for i, obj in enumerate(root.findall("object")):
        name = _text(obj.find("name"))
        if not name:
            raise DataError(f"<object> #{i + 1} has no <name>", where=path)
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"<object> #{i + 1} ({name}) has no <bndbox>", where=path)
        objects.append(SourceObject(
            name=name,
            xmin=_float(bb.find("xmin"), path, "bndbox/xmin"),
            ymin=_float(bb.find("ymin"), path, "bndbox/ymin"),
            xmax=_float(bb.find("xmax"), path, "bndbox/xmax"),
            ymax=_float(bb.find("ymax"), path, "bndbox/ymax"),
            difficult=int(bool(_int(obj.find("difficult"), 0, path, "difficult"))),
            truncated=_int(obj.find("truncated"), 0, path, "truncated"),
            pose=_text(obj.find("pose")) or "Unspecified",
        ))
    return VocAnnotation(path=path, filename=_text(root.find("filename")), folder=_text(root.find("folder")),
                         width=width, height=height, objects=objects)
