"""The documentation of a config field: the comments next to it in odkit's .proto files (src/odkit/protos).

The generated ``*_pb2`` modules carry no comments, so the ``.proto`` text (shipped as package data) is read:
the ``//`` lines right above the field and a trailing ``//`` comment on its line. Most of odkit's .proto files
are bare text-format copies; for those fields the TF OD API's comment is used, from ``protos/field_docs.json``
(written by tools/proto_field_docs.py from the TF OD API's .proto files).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

PROTO_DIR = Path(__file__).resolve().parents[1] / "protos"


@lru_cache(maxsize=64)
def _lines(file_name: str) -> tuple[str, ...]:
    path = PROTO_DIR / Path(file_name).name
    try:
        return tuple(path.read_text().splitlines())
    except OSError:
        return ()


def proto_file(field: FieldDescriptor) -> Path:
    return PROTO_DIR / Path(field.file.name).name


def field_location(field: FieldDescriptor) -> int | None:
    """1-based line of ``field`` in its .proto file (inside its message, nested messages followed)."""
    lines = _lines(field.file.name)
    owners = field.containing_type.full_name.split(".")[len(field.file.package.split(".")):]
    start, end = 0, len(lines)
    for owner in owners:  # narrow to the (nested) message block
        pat = re.compile(rf"^\s*message\s+{re.escape(owner)}\s*\{{")
        for i in range(start, end):
            if pat.match(lines[i]):
                depth, j = 0, i
                for j in range(i, end):
                    depth += lines[j].count("{") - lines[j].count("}")
                    if depth == 0:
                        break
                start, end = i + 1, j
                break
        else:
            return None
    pat = re.compile(rf"^\s*(optional|repeated|required)?\s*[\w.<>, ]+\s+{re.escape(field.name)}\s*=\s*{field.number}\b")
    depth = 0
    for i in range(start, end):
        if depth == 0 and pat.match(lines[i]):
            return i + 1
        depth += lines[i].count("{") - lines[i].count("}")
    return None


@lru_cache(maxsize=1)
def _tf_docs() -> dict[str, str]:
    try:
        return dict(json.loads((PROTO_DIR / "field_docs.json").read_text()))
    except (OSError, ValueError):
        return {}


def field_doc(field: FieldDescriptor) -> tuple[str, str]:
    """(documentation, where it comes from): the odkit .proto comment, else the TF OD API's ("" when none)."""
    own = field_comment(field)
    if own:
        return own, "odkit .proto"
    owner = field.containing_type.full_name.removeprefix(field.file.package + ".")
    tf = _tf_docs().get(f"{owner}.{field.name}", "")
    return tf, ("TF OD API .proto" if tf else "")


def field_comment(field: FieldDescriptor) -> str:
    """The field's comment in odkit's .proto ("" when there is none)."""
    line = field_location(field)
    if line is None:
        return ""
    lines = _lines(field.file.name)
    above: list[str] = []
    i = line - 2
    while i >= 0 and lines[i].strip().startswith("//"):
        above.insert(0, lines[i].strip()[2:].strip())
        i -= 1
    text = lines[line - 1]
    trailing = text.split("//", 1)[1].strip() if "//" in text else ""
    return " ".join(p for p in [*above, trailing] if p)
