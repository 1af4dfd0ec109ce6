"""User-facing errors.

Every error a user can cause (bad config, bad record, missing file, bad flag) is raised as
:class:`OdkitError`. The CLI prints it as one line and exits with code 2; no traceback.

The message says what was wrong, where (file, line, record, field) and, when useful, what to do::

    raise OdkitError("CRC mismatch in record 12", where="train.record-00001-of-00010:offset 4096",
                     hint="re-create the file or pass --skip_corrupt")
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator


class OdkitError(Exception):
    """An error caused by user input. Printed as one line by the CLI, exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        return " ".join(text.split("\n"))


class ConfigError(OdkitError):
    """A pipeline.config / override / label-map text problem. `where` is `file:line:col`."""


class DataError(OdkitError):
    """A bad record, image, annotation or dataset folder."""


class UnsupportedError(OdkitError):
    """A config field or value that odkit does not implement (see `odkit config check`).

    ``where`` is the field's dotted config path. ``substitute`` (optional) is a supported value that
    `odkit config check` puts in its place to go on building and judge the fields behind it (otherwise
    the field is cleared).
    """

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None,
                 substitute: object = None) -> None:
        super().__init__(message, where=where, hint=hint)
        self.substitute = substitute


# The input a command is working on right now (a file, a record, an image), for the CLI's last-resort
# message when an unexpected exception escapes: "while processing <input>".
_CURRENT_INPUT: contextvars.ContextVar[str | None] = contextvars.ContextVar("odkit_current_input", default=None)


@contextlib.contextmanager
def processing(name: object) -> Iterator[None]:
    """Mark ``name`` as the input being processed inside the block (see :func:`current_input`)."""
    token = _CURRENT_INPUT.set(str(name))
    try:
        yield
    finally:
        _CURRENT_INPUT.reset(token)


def current_input() -> str | None:
    return _CURRENT_INPUT.get()
