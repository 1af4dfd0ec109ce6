"""A read-tracking view over pipeline.config messages: what the code that consumes a config really reads.

``odkit config check`` hands the builders ``track(config, log)`` instead of the message itself. The view
behaves like the message for everything the builders do with it (attribute access, ``HasField``,
``WhichOneof``, repeated fields, ``len``/iteration), and records in ``log`` every field the code looked at,
with the ``file:line (function)`` of the read. A set field that no builder read is, by construction, a field
odkit does not honour: support is derived from the code, never declared beside it, so it cannot drift.

What counts as a read of field ``f`` of message ``m`` (dotted path ``p.f``):

* ``m.f`` for a scalar or repeated scalar (the whole list is read), a map, or a message (a message read
  only covers its *presence*: an empty set block such as ``iou_similarity {}`` is read when the code looked
  at it; the set fields inside it need reads of their own);
* ``m.HasField("f")``, and ``m.WhichOneof(o)`` returning ``"f"``.

Builders refuse what they do not implement with :func:`refuse` (an ``UnsupportedError`` whose ``where`` is
the field's dotted path when the message is tracked), so a refusal is written once, next to the code.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

from odkit.errors import UnsupportedError

__all__ = ["ReadLog", "Tracked", "field_path", "refuse", "track", "untracked"]

_THIS_FILE = __file__


@dataclass
class ReadLog:
    """Dotted path -> the places (``file:line (function)``) that read it."""

    reads: dict[str, list[str]] = field(default_factory=dict)

    def add(self, path: str) -> None:
        places = self.reads.setdefault(path, [])
        place = _caller()
        if place not in places:
            places.append(place)

    def was_read(self, path: str) -> bool:
        return path in self.reads


def _caller() -> str:
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename == _THIS_FILE:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"


def _is_map(fd: FD) -> bool:
    return fd.type == FD.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class _TrackedList:
    """A repeated message field: elements are tracked views ``path[i]``."""

    __slots__ = ("_items", "_path", "_log", "_raw")

    def __init__(self, raw: Any, path: str, log: ReadLog) -> None:
        self._raw = raw
        self._path = path
        self._log = log
        self._items = [Tracked(v, f"{path}[{i}]", log) for i, v in enumerate(raw)]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Tracked]:
        return iter(self._items)

    def __getitem__(self, i: Any) -> Any:
        return self._items[i]

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"tracked {self._path}: {self._raw!r}"


class Tracked:
    """A read-recording view of one message at dotted ``path`` (see the module docstring)."""

    __slots__ = ("_msg", "_path", "_log")

    def __init__(self, msg: Message, path: str, log: ReadLog) -> None:
        object.__setattr__(self, "_msg", msg)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name: str) -> Any:
        msg = self._msg
        fd = msg.DESCRIPTOR.fields_by_name.get(name)
        value = getattr(msg, name)
        if fd is None:
            return value  # DESCRIPTOR, ListFields, ...: the message's own API, not a field read
        path = _join(self._path, name)
        self._log.add(path)
        if fd.type == FD.TYPE_MESSAGE and not _is_map(fd):
            if fd.is_repeated:
                return _TrackedList(value, path, self._log)
            return Tracked(value, path, self._log)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"config views are read-only (set {name} on the message itself)")

    def HasField(self, name: str) -> bool:  # noqa: N802 - the protobuf API
        self._log.add(_join(self._path, name))
        return self._msg.HasField(name)

    def WhichOneof(self, oneof: str) -> str | None:  # noqa: N802 - the protobuf API
        which = self._msg.WhichOneof(oneof)
        if which is not None:
            self._log.add(_join(self._path, which))
        return which

    def __eq__(self, other: object) -> bool:
        return self._msg == untracked(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"tracked {self._path or '<config>'}: {type(self._msg).__name__}"


def track(config: Message, log: ReadLog, path: str = "") -> Any:
    """A read-tracking view of ``config`` (typed ``Any`` so builders keep their proto-typed code)."""
    return Tracked(config, path, log)


def untracked(msg: Any) -> Any:
    """The message behind a view (a message is returned as is); reads through it are not recorded."""
    if isinstance(msg, Tracked):
        return msg._msg
    if isinstance(msg, _TrackedList):
        return msg._raw
    return msg


def field_path(msg: Any, name: str | None = None, fallback: str | None = None) -> str:
    """The dotted config path of ``msg`` (or of its field ``name``).

    For a plain message (not a view) the path is unknown: ``fallback`` when given, else
    ``<MessageName>.<name>``.
    """
    if isinstance(msg, Tracked):
        return _join(msg._path, name) if name else msg._path
    if fallback is not None:
        return fallback
    owner = msg.DESCRIPTOR.name if hasattr(msg, "DESCRIPTOR") else "config"
    return f"{owner}.{name}" if name else owner


def refuse(msg: Any, name: str, message: str, hint: str | None = None, fallback: str | None = None) -> NoReturn:
    """Raise the ``UnsupportedError`` for field ``name`` of ``msg`` (marked read: it was looked at)."""
    if isinstance(msg, Tracked):
        msg._log.add(_join(msg._path, name))
    raise UnsupportedError(message, where=field_path(msg, name, fallback), hint=hint)
