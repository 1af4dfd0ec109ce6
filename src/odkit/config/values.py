"""Walk the set fields of a message and spell values as the text format does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf import text_encoding
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

PACKAGE_PREFIX = "odkit.protos."


def rule_key(field: FD) -> str:
    """Registry key of a field: ``<MessageName>.<field>`` (nested: ``Ssd.MaskHead.mask_height``)."""
    owner = field.containing_type.full_name
    if owner.startswith(PACKAGE_PREFIX):
        owner = owner[len(PACKAGE_PREFIX) :]
    return f"{owner}.{field.name}"


def is_map(field: FD) -> bool:
    return field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def format_scalar(field: FD, value: Any) -> str:
    """One value as written in a pipeline.config (strings quoted, enums by name)."""
    t = field.type
    if t == FD.TYPE_STRING:
        return '"' + text_encoding.CEscape(value, as_utf8=True) + '"'
    if t == FD.TYPE_BYTES:
        return '"' + text_encoding.CEscape(value, as_utf8=False) + '"'
    if t == FD.TYPE_BOOL:
        return "true" if value else "false"
    if t == FD.TYPE_ENUM:
        ev = field.enum_type.values_by_number.get(value)
        return ev.name if ev is not None else str(value)
    if t == FD.TYPE_FLOAT:
        return repr(type_checkers.ToShortestFloat(value))
    return str(value)


def comparable(field: FD, value: Any) -> Any:
    """Value used to test membership in a rule's allowed set (enums by name)."""
    if field.type == FD.TYPE_ENUM:
        ev = field.enum_type.values_by_number.get(value)
        return ev.name if ev is not None else value
    if field.type == FD.TYPE_FLOAT:
        return type_checkers.ToShortestFloat(value)
    return value


def format_value(field: FD, value: Any) -> str:
    """One element (scalar or message) of `field`, on one line."""
    if field.type == FD.TYPE_MESSAGE:
        from google.protobuf import text_format

        body = text_format.MessageToString(value, as_one_line=True)
        return "{" + (f" {body} " if body else "") + "}"
    return format_scalar(field, value)


def format_field(field: FD, value: Any) -> str:
    """A whole field value: scalar, list of scalars, message or map (one line)."""
    if is_map(field):
        vf = field.message_type.fields_by_name["value"]
        kf = field.message_type.fields_by_name["key"]
        items = [f"{format_scalar(kf, k)}: {format_value(vf, value[k])}" for k in sorted(value)]
        return "{" + ", ".join(items) + "}"
    if field.is_repeated:
        return "[" + ", ".join(format_value(field, v) for v in value) + "]"
    return format_value(field, value)


def iter_leaves(msg: Message, prefix: str = "") -> Iterator[tuple[str, FD, str]]:
    """(dotted path, field, text value) for every set leaf: scalars, list elements, empty messages.

    Repeated elements are indexed ``name[i]``; map entries ``name["key"]``.
    """
    for field, value in msg.ListFields():
        path = f"{prefix}{field.name}"
        if is_map(field):
            kf = field.message_type.fields_by_name["key"]
            vf = field.message_type.fields_by_name["value"]
            for k in sorted(value):
                sub = f"{path}[{format_scalar(kf, k)}]"
                if vf.type == FD.TYPE_MESSAGE:
                    yield from _message_leaves(value[k], sub, field)
                else:
                    yield sub, vf, format_scalar(vf, value[k])
        elif field.is_repeated:
            for i, item in enumerate(value):
                sub = f"{path}[{i}]"
                if field.type == FD.TYPE_MESSAGE:
                    yield from _message_leaves(item, sub, field)
                else:
                    yield sub, field, format_scalar(field, item)
        elif field.type == FD.TYPE_MESSAGE:
            yield from _message_leaves(value, path, field)
        else:
            yield path, field, format_scalar(field, value)


def _message_leaves(msg: Message, path: str, field: FD) -> Iterator[tuple[str, FD, str]]:
    if msg.ListFields():
        yield from iter_leaves(msg, path + ".")
    else:
        yield path, field, "{}"
