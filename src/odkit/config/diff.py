"""Field-level differences between two configs, as dotted paths."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from odkit.config.values import iter_leaves


@dataclass(frozen=True)
class Difference:
    """One path whose value differs; ``None`` means the field is not set on that side."""

    path: str
    a: str | None
    b: str | None

    def __str__(self) -> str:
        if self.a is None:
            return f"+ {self.path}: {self.b}"
        if self.b is None:
            return f"- {self.path}: {self.a}"
        return f"~ {self.path}: {self.a} -> {self.b}"


def flatten(config: Message) -> dict[str, str]:
    """Dotted path -> text value for every set leaf of `config`."""
    return {path: value for path, _field, value in iter_leaves(config)}


def diff(a: Message, b: Message) -> list[Difference]:
    """Differences from `a` to `b`, in `a`'s field order then `b`'s new paths."""
    fa, fb = flatten(a), flatten(b)
    out = [Difference(p, v, fb.get(p)) for p, v in fa.items() if fb.get(p) != v]
    out += [Difference(p, None, v) for p, v in fb.items() if p not in fa]
    return out
