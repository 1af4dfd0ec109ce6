"""odkit CLI: placeholder until the owning module lands."""

from __future__ import annotations

import argparse

from odkit.cli.common import not_implemented


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.set_defaults(command=command)


def run(args: argparse.Namespace) -> int:
    return not_implemented(args.command)
