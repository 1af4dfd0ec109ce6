"""Config support registry: which set pipeline.config fields odkit honours, and where.

The rule "nothing set is silently ignored": :func:`check` walks every SET field of a config
(``ListFields``, recursing into messages) and reports each one odkit does not honour.

Rules live in one module per area (``common``, ``inputs``, ``ssd``, ``faster_rcnn``, ``center_net``, ``training``,
``evaluation``), each defining ``RULES: dict[str, Rule]`` keyed ``"<ProtoMessageName>.<field_name>"``
(nested messages: ``"Ssd.MaskHead.mask_height"``). Rule kinds (``odkit.config.support.rules``):

* ``Honoured(where="odkit.module")``: every value works; that module reads the field.
* ``Values(allowed={...}, where=...)``: only these values work (enum values by name).
* ``Refused(reason="...")``: known, deliberately not implemented.

How a set field is judged: a scalar (or repeated scalar) needs ``Honoured`` or an allowed
``Values``; a message field with a rule follows that rule (``Honoured`` covers the whole
sub-message); a message field without a rule is supported when all its set fields are, and an
EMPTY set message (``iou_similarity {}``) without a rule is unsupported, since its presence
chooses behaviour.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

from odkit.config.support import center_net, common, evaluation, faster_rcnn, inputs, ssd, training
from odkit.config.support.rules import Honoured, Refused, Rule, Values
from odkit.config.values import PACKAGE_PREFIX, comparable, format_field, format_scalar, is_map, rule_key
from odkit.errors import UnsupportedError

__all__ = [
    "RULES",
    "Honoured",
    "Refused",
    "Rule",
    "Unsupported",
    "Values",
    "check",
    "registry_problems",
    "require_supported",
]

AREAS = (common, inputs, ssd, faster_rcnn, center_net, training, evaluation)
NO_RULE = "not implemented by odkit"


def _merge() -> tuple[dict[str, Rule], list[str]]:
    merged: dict[str, Rule] = {}
    conflicts: list[str] = []
    for area in AREAS:
        for key, rule in area.RULES.items():
            if key in merged and merged[key] != rule:
                conflicts.append(f"{key}: {area.__name__} disagrees with an earlier area")
                continue
            merged[key] = rule
    return merged, conflicts


RULES, CONFLICTS = _merge()


@dataclass(frozen=True)
class Unsupported:
    """A set field odkit does not honour: dotted path, value as in the text format, why."""

    path: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} = {self.value}  ({self.reason})"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "value": self.value, "reason": self.reason}


def _values_reason(rule: Values) -> str:
    shown = ", ".join(sorted(repr(v) if isinstance(v, str) else str(v) for v in rule.allowed))
    return f"odkit supports only {shown} ({rule.where})"


def _walk(msg: Message, prefix: str, rules: dict[str, Rule], out: list[Unsupported]) -> None:
    for field, value in msg.ListFields():
        path = prefix + field.name
        rule = rules.get(rule_key(field))
        if isinstance(rule, Honoured):
            continue
        if isinstance(rule, Refused):
            out.append(Unsupported(path, format_field(field, value), rule.reason))
            continue
        repeated = field.is_repeated
        if is_map(field):
            if rule is None:
                out.append(Unsupported(path, format_field(field, value), NO_RULE))
            continue
        if field.type == FD.TYPE_MESSAGE:
            elements = list(value) if repeated else [value]
            for i, element in enumerate(elements):
                p = f"{path}[{i}]" if repeated else path
                if element.ListFields():
                    _walk(element, p + ".", rules, out)
                else:
                    out.append(Unsupported(p, "{}", NO_RULE))
            continue
        if rule is None:
            out.append(Unsupported(path, format_field(field, value), NO_RULE))
            continue
        if repeated:
            for i, v in enumerate(value):
                if comparable(field, v) not in rule.allowed:
                    out.append(Unsupported(f"{path}[{i}]", format_scalar(field, v), _values_reason(rule)))
        elif comparable(field, value) not in rule.allowed:
            out.append(Unsupported(path, format_scalar(field, value), _values_reason(rule)))


def check(config: Message, rules: dict[str, Rule] | None = None) -> list[Unsupported]:
    """Every set field of `config` that odkit does not honour, in field order."""
    out: list[Unsupported] = []
    _walk(config, "", RULES if rules is None else rules, out)
    return out


def require_supported(
    config: Message, allow_unsupported: bool = False, path: str | None = None
) -> list[Unsupported]:
    """Raise UnsupportedError if `config` sets fields odkit does not honour.

    With ``allow_unsupported`` a one-line warning goes to stderr instead and the list is returned.
    """
    problems = check(config)
    if not problems:
        return problems
    first = "; ".join(str(p) for p in problems[:3])
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    if allow_unsupported:
        print(
            f"odkit: warning: ignoring {len(problems)} config field(s) odkit does not honour: {first}{more}",
            file=sys.stderr,
        )
        return problems
    target = path or "PIPELINE_CONFIG"
    raise UnsupportedError(
        f"{len(problems)} config field(s) are set that odkit does not honour: {first}{more}",
        where=path,
        hint=f"run `odkit config check {target}` for the full list, or pass --allow_unsupported to run anyway",
    )


def registry_problems(rules: dict[str, Rule] | None = None) -> list[str]:
    """Keys that name no proto field, misused rule kinds, and conflicts between areas."""
    pool = descriptor_pool.Default()
    problems = list(CONFLICTS)
    for key, rule in (RULES if rules is None else rules).items():
        owner, _, name = key.rpartition(".")
        try:
            desc = pool.FindMessageTypeByName(PACKAGE_PREFIX + owner)
        except KeyError:
            problems.append(f"{key}: no message {owner} in odkit.protos")
            continue
        field = desc.fields_by_name.get(name)
        if field is None:
            problems.append(f"{key}: {owner} has no field {name}")
            continue
        if not isinstance(rule, (Honoured, Values, Refused)):
            problems.append(f"{key}: rule must be Honoured, Values or Refused, got {type(rule).__name__}")
        elif isinstance(rule, Values) and field.type == FD.TYPE_MESSAGE:
            problems.append(f"{key}: Values rules apply to scalar fields only")
        elif isinstance(rule, Values) and field.type == FD.TYPE_ENUM:
            names = {v.name for v in field.enum_type.values}
            bad = sorted(str(v) for v in rule.allowed if v not in names)
            if bad:
                problems.append(f"{key}: {', '.join(bad)} not values of enum {field.enum_type.name}")
    return problems
