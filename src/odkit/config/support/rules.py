"""Rule kinds of the config support registry (see :mod:`odkit.config.support`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Honoured:
    """Every value of the field is implemented; `where` names the module that reads it."""

    where: str


@dataclass(frozen=True)
class Values:
    """Only these values are implemented (enum values by name, e.g. {"SIGMOID"}; floats exactly)."""

    allowed: frozenset[Any] | set[Any]
    where: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", frozenset(self.allowed))


@dataclass(frozen=True)
class Refused:
    """The field is known and deliberately not implemented; `reason` says why / what to do."""

    reason: str


Rule = Honoured | Values | Refused
