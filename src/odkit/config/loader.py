"""Read, print and write pipeline.config text files (TF OD API text format).

Every parse problem becomes one :class:`~odkit.errors.ConfigError` whose ``where`` is
``file:line:col`` (1-based, as google.protobuf.text_format reports it).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import descriptor_pool, text_format
from google.protobuf.message import Message

from odkit.config.overrides import apply_config_overrides, apply_overrides
from odkit.config.validate import check_depth, validate
from odkit.errors import ConfigError, OdkitError
from odkit.fileio import atomic_write_text
from odkit.protos import pipeline_pb2

_POSITION = re.compile(r"^(\d+):(\d+)\s*:\s*")
_SOURCE_ECHO = re.compile(r"^'.*?':\s+(?=[A-Z])")
_UNQUOTED = re.compile(r"Expected string but found: '([A-Za-z_][A-Za-z0-9_\-]*)'")
_NO_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "(\w+)"')
_MAX_LENIENT_FIXES = 50


def _field_hint(message: str) -> str | None:
    """'did you mean ...' for an unknown field name."""
    m = _NO_FIELD.search(message)
    if not m:
        return None
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(m.group(1))
    except KeyError:
        return None
    close = difflib.get_close_matches(m.group(2), [f.name for f in desc.fields], n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(close) + "?"
    return "not a field of the TF OD API schema odkit follows; check spelling and nesting"


def _to_config_error(exc: text_format.ParseError, filename: str) -> ConfigError:
    text = str(exc)
    line, col = exc.GetLine(), exc.GetColumn()
    m = _POSITION.match(text)
    if m:
        text = text[m.end() :]
        line, col = line or int(m.group(1)), col or int(m.group(2))
    text = _SOURCE_ECHO.sub("", text).strip()
    where = f"{filename}:{line}:{col}" if line else filename
    return ConfigError(text or "cannot parse", where=where, hint=_field_hint(text))


def _quote_at(text: str, line: int, col: int, ident: str) -> str | None:
    lines = text.split("\n")
    if not (1 <= line <= len(lines)):
        return None
    src = lines[line - 1]
    start = col - 1
    if src[start : start + len(ident)] != ident:
        return None
    lines[line - 1] = f'{src[:start]}"{ident}"{src[start + len(ident) :]}'
    return "\n".join(lines)


def _top_level_extension(text: str) -> tuple[int, int, str] | None:
    """(line, col, name) of a ``[ext.name]`` block at the top level, which would be dropped silently.

    Unknown extensions are skipped while parsing (TF model-zoo files carry Google-internal input
    readers inside ``external_input_reader``, which `odkit config check` refuses); at the top level
    nothing would report them, so they are an error instead.
    """
    depth, line, col, i, n = 0, 1, 0, 0, len(text)
    prev = ""
    while i < n:
        c = text[i]
        if c == "\n":
            line, col, i = line + 1, 0, i + 1
            continue
        col += 1
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            col += j - i
            i, prev = j + 1, c
            continue
        if c in "{<":
            depth += 1
        elif c in "}>":
            depth -= 1
        elif c == "[" and depth == 0 and prev not in (":", ","):
            end = text.find("]", i)
            return line, col, text[i + 1 : end if end > 0 else n].strip()
        if not c.isspace():
            prev = c
        i += 1
    return None


def parse_text(
    text: str, filename: str = "<text>", message: Message | None = None
) -> tuple[Message, list[str]]:
    """Parse text into `message` (default a new TrainEvalPipelineConfig); return it and notes.

    TF model-zoo files sometimes carry an unquoted placeholder (``fine_tune_checkpoint:
    PATH_TO_BE_CONFIGURED``); such a bare word in a string field is read as that string and a note
    naming the line is returned. Unknown extensions (Google-internal input readers) are skipped.
    """
    notes: list[str] = []
    check_depth(text, filename)
    for _ in range(_MAX_LENIENT_FIXES + 1):
        msg = message.__class__() if message is not None else pipeline_pb2.TrainEvalPipelineConfig()
        try:
            text_format.Parse(text, msg, allow_unknown_extension=True)
        except text_format.ParseError as exc:
            m = _UNQUOTED.search(str(exc))
            fixed = _quote_at(text, exc.GetLine() or 0, exc.GetColumn() or 0, m.group(1)) if m else None
            if fixed is None:
                raise _to_config_error(exc, filename) from None
            notes.append(
                f"{filename}:{exc.GetLine()}:{exc.GetColumn()}: unquoted {m.group(1)} read as the string "
                f'"{m.group(1)}" (replace it with a real value)'
            )
            text = fixed
            continue
        except (UnicodeDecodeError, ValueError) as exc:  # e.g. invalid UTF-8 inside a string literal
            raise ConfigError(f"cannot parse: {str(exc)[:200]}", where=filename) from None
        except RecursionError:
            raise ConfigError("blocks nested too deeply", where=filename) from None
        if message is None and (ext := _top_level_extension(text)):
            raise ConfigError(
                f"unknown extension [{ext[2]}]: odkit cannot honour it",
                where=f"{filename}:{ext[0]}:{ext[1]}",
                hint="remove it",
            )
        if message is not None:
            message.CopyFrom(msg)
            msg = message
        return msg, notes
    raise ConfigError("too many unquoted string values", where=filename)


def read_text_file(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file, with every failure as a ConfigError naming the file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", where=str(p), hint="check the path") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a pipeline.config file", where=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", where=str(p)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            "not a UTF-8 text file (binary or wrong encoding)", where=f"{p}:{line}:{col}"
        ) from None


def _warn(notes: list[str]) -> None:
    for note in notes:
        print(f"odkit: warning: {note}", file=sys.stderr)


def load_text(text: str, filename: str = "<text>") -> pipeline_pb2.TrainEvalPipelineConfig:
    """Parse pipeline.config text; errors are ConfigError at `filename:line:col`.

    Lenient-parsing notes (see :func:`parse_text`) are printed to stderr as warnings.
    """
    config, notes = parse_text(text, filename)
    _warn(notes)
    return config  # type: ignore[return-value]


def load_with_notes(
    path: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    config_overrides: Iterable[str] = (),
) -> tuple[pipeline_pb2.TrainEvalPipelineConfig, list[str]]:
    """Like :func:`load`, also returning notes about lenient parsing."""
    text = read_text_file(path)
    config, notes = parse_text(text, str(path))
    validate(config, text, str(path))
    overrides, config_overrides = list(overrides or ()), list(config_overrides or ())
    apply_config_overrides(config, config_overrides)
    apply_overrides(config, overrides)
    if overrides or config_overrides:
        validate(config, None, "after --override / --config_override")
    return config, notes  # type: ignore[return-value]


def load(
    path: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    config_overrides: Iterable[str] = (),
) -> pipeline_pb2.TrainEvalPipelineConfig:
    """Read a pipeline.config, merge each ``--config_override`` text, then apply ``--override K=V``.

    Lenient-parsing notes (see :func:`parse_text`) are printed to stderr as warnings.
    """
    config, notes = load_with_notes(path, overrides, config_overrides)
    _warn(notes)
    return config


def to_text(config: Message) -> str:
    """Canonical text format (fields in field-number order, shortest float spelling)."""
    return text_format.MessageToString(config)


def save(config: Message, path: str | os.PathLike[str]) -> None:
    """Write `config` as canonical text, atomically (temp file + os.replace)."""
    p = Path(path)
    try:
        atomic_write_text(p, to_text(config))
    except OdkitError as exc:
        raise ConfigError(exc.message, where=exc.where, hint=exc.hint) from None
