"""`odkit config validate|show|diff|check|explain`: pipeline.config tooling (check and explain build the
model on torch's meta device; the others need no torch).

validate PATH...      parse each file (exit 0 when all parse, 2 otherwise)
show PATH             canonical text after --override / --config_override
diff A B              field-level differences as dotted paths (exit 0 same, 1 different)
check PATH [--json]   set fields odkit refuses or does not read (exit 0 none, 3 some, 2 config errors)
explain FIELD         the code that reads a field (file:line), its default and documentation
"""

from __future__ import annotations

import argparse
import json
import sys

from odkit.cli.common import add_override_flags

# The odkit modules a command needs are imported inside its functions: loading a command module (to parse
# its flags, print --help or refuse a bad flag) must not import torch, and `odkit predict` must run without it
# (tests/test_train_cli.py, tests/test_predict.py).

EXIT_UNSUPPORTED = 3


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.set_defaults(command=command)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    v = sub.add_parser("validate", help="parse pipeline.config files; report the first error of each")
    v.add_argument("paths", nargs="+", metavar="PATH")
    add_override_flags(v)

    s = sub.add_parser("show", help="print the config in canonical text format")
    s.add_argument("path", metavar="PATH")
    add_override_flags(s)

    d = sub.add_parser("diff", help="field-level differences between two configs")
    d.add_argument("a", metavar="A")
    d.add_argument("b", metavar="B")

    c = sub.add_parser("check", help="list set fields that odkit does not honour")
    c.add_argument("path", metavar="PATH")
    c.add_argument("--json", action="store_true", help='print {"unsupported": [{"path", "value", "reason"}]}')
    add_override_flags(c)

    e = sub.add_parser("explain", help="who reads a config field (file:line), its default and its documentation")
    e.add_argument("field", metavar="FIELD", help="dotted path, e.g. model.ssd.feature_extractor.fpn.min_level")
    e.add_argument("--config", default=None, metavar="PATH",
                   help="a pipeline.config to build (default: a built-in one for the field's model type)")


def _validate(args: argparse.Namespace) -> int:
    from odkit.config import load_with_notes
    from odkit.errors import OdkitError

    failed = 0
    for path in args.paths:
        try:
            _, notes = load_with_notes(path, args.override, args.config_override)
        except OdkitError as exc:
            failed += 1
            print(f"odkit config: error: {exc.one_line()}", file=sys.stderr)
            continue
        for note in notes:
            print(f"odkit config: note: {note}", file=sys.stderr)
        print(f"{path}: OK")
    return 2 if failed else 0


def _show(args: argparse.Namespace) -> int:
    from odkit.config import load_with_notes, to_text

    config, notes = load_with_notes(args.path, args.override, args.config_override)
    for note in notes:
        print(f"odkit config: note: {note}", file=sys.stderr)
    sys.stdout.write(to_text(config))
    return 0


def _diff(args: argparse.Namespace) -> int:
    from odkit.config import diff, load

    differences = diff(load(args.a), load(args.b))
    for d in differences:
        print(d)
    return 1 if differences else 0


def _check(args: argparse.Namespace) -> int:
    from odkit.config import load
    from odkit.workflows.config_check import check

    result = check(load(args.path, args.override, args.config_override))
    problems = result.unsupported
    if args.json:
        print(json.dumps({"unsupported": [p.to_dict() for p in problems],
                          "accepted": [p.to_dict() for p in result.accepted],
                          "not_checked": [p.to_dict() for p in result.unchecked],
                          "errors": result.errors, "notes": result.notes}, indent=2))
    else:
        for p in problems:
            print(p)
        for p in result.accepted:
            print(p)
        for p in result.unchecked:
            print(p)
        for e in result.errors:
            print(f"odkit config: error: {e}", file=sys.stderr)
        for n in result.notes:
            print(f"odkit config: note: {n}", file=sys.stderr)
        if problems:
            print(f"{len(problems)} set field(s) not honoured by odkit", file=sys.stderr)
        elif result.errors:
            print(f"{len(result.errors)} config error(s): fix them before using this config", file=sys.stderr)
        else:
            print(f"{args.path}: every set field is honoured by odkit"
                  + (f" ({len(result.accepted)} accepted with no effect)" if result.accepted else ""))
    if result.errors:
        return 2
    return EXIT_UNSUPPORTED if problems else 0


def _explain(args: argparse.Namespace) -> int:
    from odkit.workflows.config_explain import explain

    for line in explain(args.field, args.config).lines():
        print(line)
    return 0


def run(args: argparse.Namespace) -> int:
    actions = {"validate": _validate, "show": _show, "diff": _diff, "check": _check, "explain": _explain}
    return actions[args.action](args)
