"""``--override K=V`` (dotted path typed from the schema) and ``--config_override TEXT``.

Path syntax: ``train_config.batch_size=8``; ``eval_input_reader.0.label_map_path=X`` (or ``[0]``)
indexes a repeated message (index == length appends); a repeated scalar given without an index
is replaced by the single value; ``...input_path.1=Y`` sets one element; map fields take the key
as the next segment. Enums by name, bools ``true``/``false``, ``field=`` sets an empty string.
A message field takes text-format content: ``model.ssd.similarity_calculator.iou_similarity={}``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

from odkit.errors import ConfigError

_SEGMENT = re.compile(r"\[(\d+)\]")
_INT_LIMITS = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}


class _Bad(Exception):
    """Internal: message for the ConfigError of the override being applied."""


def _is_map(field: FD) -> bool:
    return field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def convert_scalar(field: FD, text: str) -> object:
    """Convert override text to a Python value for `field` (a scalar or enum field)."""
    t = field.type
    if t == FD.TYPE_STRING:
        return text
    if t == FD.TYPE_BYTES:
        return text.encode("utf-8")
    if t == FD.TYPE_BOOL:
        low = text.strip().lower()
        if low in ("true", "t", "1"):
            return True
        if low in ("false", "f", "0"):
            return False
        raise _Bad(f"field {field.name} is a bool: expected true or false, got {text!r}")
    if t == FD.TYPE_ENUM:
        enum = field.enum_type
        value = enum.values_by_name.get(text.strip())
        if value is not None:
            return value.number
        if re.fullmatch(r"-?\d+", text.strip()) and int(text) in enum.values_by_number:
            return int(text)
        names = ", ".join(v.name for v in enum.values)
        raise _Bad(f"field {field.name} is an enum {enum.name}: {text!r} is not one of {names}")
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        try:
            return float(text)
        except ValueError:
            raise _Bad(f"field {field.name} is a number: cannot read {text!r}") from None
    if t in _INT_LIMITS:
        try:
            value = int(text.strip(), 0)
        except ValueError:
            raise _Bad(f"field {field.name} is an integer: cannot read {text!r}") from None
        lo, hi = _INT_LIMITS[t]
        if not lo <= value <= hi:
            raise _Bad(f"field {field.name}: {value} is out of range [{lo}, {hi}]")
        return value
    raise _Bad(f"field {field.name} has a type odkit cannot override")


def _split(path: str) -> list[str]:
    parts = _SEGMENT.sub(r".\1", path).split(".")
    if not path or any(p == "" for p in parts):
        raise _Bad(f"bad path {path!r} (expected dotted field names, e.g. train_config.batch_size)")
    return parts


def _field(msg: Message, name: str) -> FD:
    field = msg.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        names = [f.name for f in msg.DESCRIPTOR.fields]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise _Bad(f"{msg.DESCRIPTOR.name} has no field {name!r}{hint}")
    return field


def _index(seg: str, length: int, what: str) -> int:
    if not seg.isdigit():
        raise _Bad(f"{what} is repeated: expected an index (0..{length}), got {seg!r}")
    i = int(seg)
    if i > length:
        raise _Bad(f"index {i} is out of range for {what}, which has {length} element(s)")
    return i


def _merge_message(target: Message, text: str, what: str) -> None:
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    target.Clear()
    try:
        text_format.Merge(body, target, allow_unknown_extension=True)
    except text_format.ParseError as exc:
        raise _Bad(f"bad text for message {what}: {exc}") from None
    target.SetInParent()


def _check_oneof_switch(msg: Message, field: FD, rest: list[str], done: list[str]) -> None:
    """Refuse to switch a oneof by setting a field *inside* an unset member (e.g. an Adam config and
    ``...optimizer.momentum_optimizer.learning_rate...=X`` would silently become a default momentum
    optimizer). Naming the member itself (``...optimizer.momentum_optimizer={...}`` or
    ``...optimizer={momentum_optimizer {...}}``) is the explicit switch and is allowed."""
    oneof = field.containing_oneof
    if oneof is None or not rest:
        return
    current = msg.WhichOneof(oneof.name)
    if current is None or current == field.name:
        return
    parent = ".".join(done) or "the config"
    raise _Bad(
        f"{parent} has {current} set, not {field.name} (one of '{oneof.name}'): setting "
        f"{field.name}.{'.'.join(rest)} would replace {current} with a {field.name} whose other fields are "
        f"defaults; to switch on purpose, set the whole member: {parent}.{field.name}={{...}}"
    )


def _set(msg: Message, parts: list[str], value: str, done: list[str] | None = None) -> None:
    done = done or []
    name, rest = parts[0], parts[1:]
    field = _field(msg, name)
    _check_oneof_switch(msg, field, rest, done)
    done = [*done, name]
    repeated = field.is_repeated
    if _is_map(field):
        container = getattr(msg, name)
        if not rest:
            raise _Bad(f"{name} is a map: add the key, e.g. {name}.KEY=VALUE")
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        key = convert_scalar(key_field, rest[0])
        if value_field.type == FD.TYPE_MESSAGE:
            if len(rest) == 1:
                _merge_message(container[key], value, f"{name}[{rest[0]}]")
            else:
                _set(container[key], rest[1:], value, [*done, rest[0]])
        else:
            if len(rest) != 1:
                raise _Bad(f"{name}[{rest[0]}] is a scalar; nothing can follow it")
            container[key] = convert_scalar(value_field, value)
        return
    if field.type == FD.TYPE_MESSAGE:
        if repeated:
            container = getattr(msg, name)
            if not rest:
                raise _Bad(f"{name} is a repeated message: add an index, e.g. {name}.0.FIELD=VALUE")
            i = _index(rest[0], len(container), name)
            element = container.add() if i == len(container) else container[i]
            if len(rest) == 1:
                _merge_message(element, value, f"{name}[{i}]")
            else:
                _set(element, rest[1:], value, [*done, rest[0]])
            return
        sub = getattr(msg, name)
        if not rest:
            _merge_message(sub, value, name)
        else:
            _set(sub, rest, value, done)
        return
    if repeated:
        container = getattr(msg, name)
        if not rest:
            del container[:]
            container.append(convert_scalar(field, value))
            return
        if len(rest) != 1:
            raise _Bad(f"{name}[{rest[0]}] is a scalar; nothing can follow it")
        i = _index(rest[0], len(container), name)
        converted = convert_scalar(field, value)
        if i == len(container):
            container.append(converted)
        else:
            container[i] = converted
        return
    if rest:
        raise _Bad(f"{name} is a scalar field; nothing can follow it (got .{'.'.join(rest)})")
    setattr(msg, name, convert_scalar(field, value))


def apply_override(config: Message, item: str) -> None:
    """Apply one ``K=V`` override to `config` in place."""
    where = f"--override {item}"
    if "=" not in item:
        raise ConfigError("expected KEY=VALUE, e.g. train_config.batch_size=8", where=where)
    key, value = item.split("=", 1)
    try:
        _set(config, _split(key.strip()), value)
    except _Bad as exc:
        raise ConfigError(str(exc), where=where) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value: {exc}", where=where) from None


def apply_overrides(config: Message, items: Iterable[str]) -> None:
    """Apply ``K=V`` overrides in order."""
    for item in items or ():
        apply_override(config, item)


def apply_config_overrides(config: Message, texts: Iterable[str]) -> None:
    """Merge text-format snippets into `config` (as exporter_main_v2.py's --config_override)."""
    for n, text in enumerate(texts or (), start=1):
        try:
            text_format.Merge(text, config, allow_unknown_extension=True)
        except text_format.ParseError as exc:
            line, col = exc.GetLine(), exc.GetColumn()
            msg = re.sub(r"^\d+:\d+\s*:\s*", "", str(exc))
            msg = re.sub(r"^'.*?':\s+(?=[A-Z])", "", msg)
            where = f"--config_override #{n}:{line}:{col}" if line else f"--config_override #{n}"
            raise ConfigError(msg, where=where) from None
